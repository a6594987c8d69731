// The network's pure layout functions: subnet sizes that fit every allowed VPC, and security
// group rules that open only what builders and the agent need.
import test from 'ava';
import {
  agentEgressRules,
  builderEgressRules,
  builderIngressRules,
  controlPlanePort,
  subnetMasks,
} from '../stacks/network';

test('subnets fit every VPC size and zone count the configuration allows', (t) => {
  t.deepEqual(subnetMasks('10.80.0.0/16', 2), { zone: 17, private: 18, public: 19 });
  t.deepEqual(subnetMasks('10.80.0.0/16', 3), { zone: 18, private: 19, public: 20 });
  for (let mask = 16; mask <= 22; mask++) {
    for (let zones = 1; zones <= 6; zones++) {
      const m = subnetMasks(`10.0.0.0/${mask}`, zones);
      t.true(
        m.public <= 28,
        `/${mask} with ${zones} zones leaves the public subnet a /${m.public}`,
      );
      // Zones never overlap: 2^(zone - vpc) slots for the zones.
      t.true(2 ** (m.zone - mask) >= zones);
    }
  }
});

test('BuildKit is opened per named CIDR, on its port only', (t) => {
  t.deepEqual(builderIngressRules(8372, ['10.0.0.0/8', '2001:db8::/32']), [
    {
      description: 'BuildKit (mutual TLS) from 10.0.0.0/8',
      protocol: 'tcp',
      fromPort: 8372,
      toPort: 8372,
      cidr: '10.0.0.0/8',
    },
    {
      description: 'BuildKit (mutual TLS) from 2001:db8::/32',
      protocol: 'tcp',
      fromPort: 8372,
      toPort: 8372,
      cidr: '2001:db8::/32',
    },
  ]);
});

test('builders reach the web and the control plane, or everything when asked', (t) => {
  const ports = (rules: { fromPort?: number }[]) =>
    [...new Set(rules.map((r) => r.fromPort ?? 0))].sort((a, b) => a - b);
  t.deepEqual(ports(builderEgressRules('web', 'https://slipway.example.com')), [80, 443]);
  t.deepEqual(
    ports(builderEgressRules('web', 'https://slipway.example.com:8443')),
    [80, 443, 8443],
  );
  const all = builderEgressRules('all', 'https://slipway.example.com');
  t.deepEqual(
    all.map((r) => [r.protocol, r.cidr]),
    [
      ['-1', '0.0.0.0/0'],
      ['-1', '::/0'],
    ],
  );
  t.deepEqual(ports(agentEgressRules('https://cp.internal:9443')), [443, 9443]);
  t.is(controlPlanePort('https://slipway.example.com'), 443);
});
