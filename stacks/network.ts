// Where builders and the agent run: a new VPC (pulumi-awsx) or the user's own VPC and private
// subnets, and the security groups. The layout and every rule are computed by plain functions
// from the configuration; the Network component only turns them into resources.
import * as aws from '@pulumi/aws';
import * as awsx from '@pulumi/awsx';
import * as pulumi from '@pulumi/pulumi';
import type { NetworkConfig } from './config';

export interface SecurityRuleSpec {
  description: string;
  /** `tcp`, `udp` or `-1` for every protocol. */
  protocol: 'tcp' | 'udp' | '-1';
  fromPort?: number;
  toPort?: number;
  cidr: string;
}

const everywhere = ['0.0.0.0/0', '::/0'];
const cidrKey = (cidr: string) => (cidr.includes(':') ? 'cidrIpv6' : 'cidrIpv4');

/** The port of the control plane URL, which agent and builders must reach. */
export function controlPlanePort(controlPlaneUrl: string): number {
  const url = new URL(controlPlaneUrl);
  return url.port ? Number(url.port) : url.protocol === 'http:' ? 80 : 443;
}

/**
 * Subnet sizes in each zone of a new VPC: the zone's range (the VPC split in a power of two of
 * zones) gives half to the builders' private subnet and a quarter to the public one, which only
 * holds the NAT gateway. The configuration's bounds (/16 to /22, at most 6 zones) keep the
 * public subnet within AWS's smallest, a /28.
 */
export function subnetMasks(
  vpcCidr: string,
  zones: number,
): { zone: number; private: number; public: number } {
  const vpcMask = Number(vpcCidr.split('/')[1]);
  const zone = vpcMask + Math.ceil(Math.log2(zones));
  return { zone, private: zone + 1, public: zone + 2 };
}

/** The awsx VPC for a new network: private subnets for builders and the agent, public for NAT. */
export function newVpcArgs(
  network: Extract<NetworkConfig, { mode: 'new' }>,
  tags: Record<string, string>,
): awsx.ec2.VpcArgs {
  const masks = subnetMasks(network.cidr, network.availabilityZones);
  return {
    cidrBlock: network.cidr,
    numberOfAvailabilityZones: network.availabilityZones,
    enableDnsHostnames: true,
    enableDnsSupport: true,
    subnetStrategy: 'Auto',
    // Builders live in the private subnets; the public ones only hold the NAT gateways.
    subnetSpecs: [
      { type: 'Private', name: 'builders', cidrMask: masks.private },
      { type: 'Public', name: 'nat', cidrMask: masks.public },
    ],
    natGateways: { strategy: network.natGateways === 'onePerAz' ? 'OnePerAz' : 'Single' },
    tags,
  };
}

/** BuildKit is reachable from the CIDRs the user named, on its port, and nothing else. */
export function builderIngressRules(port: number, cidrs: string[]): SecurityRuleSpec[] {
  return cidrs.map((cidr) => ({
    description: `BuildKit (mutual TLS) from ${cidr}`,
    protocol: 'tcp',
    fromPort: port,
    toPort: port,
    cidr,
  }));
}

function tcpTo(ports: number[], why: (port: number) => string): SecurityRuleSpec[] {
  return [...new Set(ports)].flatMap((port) =>
    everywhere.map((cidr) => ({
      description: why(port),
      protocol: 'tcp' as const,
      fromPort: port,
      toPort: port,
      cidr,
    })),
  );
}

/**
 * What builders may reach. `web`: HTTP and HTTPS (registries, package mirrors, git over https)
 * and the control plane's port. `all`: anything, for builds that fetch over other protocols.
 * DNS, NTP and the instance metadata service are link-local and need no rule.
 */
export function builderEgressRules(
  egress: 'web' | 'all',
  controlPlaneUrl: string,
): SecurityRuleSpec[] {
  if (egress === 'all') {
    return everywhere.map((cidr) => ({
      description: 'Builds may reach anything',
      protocol: '-1',
      cidr,
    }));
  }
  const cp = controlPlanePort(controlPlaneUrl);
  return tcpTo([80, 443, cp], (port) =>
    port === 80
      ? 'HTTP for builds (package mirrors)'
      : port === 443
        ? 'HTTPS for builds, registries and the control plane'
        : 'The control plane',
  );
}

/** The agent talks to AWS APIs and the control plane over HTTPS; nothing reaches it. */
export function agentEgressRules(controlPlaneUrl: string): SecurityRuleSpec[] {
  return tcpTo([443, controlPlanePort(controlPlaneUrl)], (port) =>
    port === 443 ? 'HTTPS to AWS APIs and the control plane' : 'The control plane',
  );
}

/** The image build instance downloads packages, Go modules and talks to SSM. */
export function imageBuildEgressRules(): SecurityRuleSpec[] {
  return tcpTo([80, 443], (port) =>
    port === 80 ? 'HTTP for OS packages' : 'HTTPS for packages, modules and SSM',
  );
}

export interface SubnetPlacement {
  id: string;
  zone: string;
}

/**
 * Checks the subnets found for an existing VPC: all exist, all in that VPC, none that gives
 * instances public addresses. Returns every problem at once.
 */
export function subnetProblems(
  vpcId: string,
  subnets: (
    { id: string; vpcId: string; mapPublicIpOnLaunch: boolean } | { id: string; missing: true }
  )[],
): string[] {
  const problems: string[] = [];
  subnets.forEach((s, i) => {
    const key = `slipway:privateSubnetIds[${i}] ${s.id}`;
    if ('missing' in s) {
      problems.push(`${key} was not found in this account and region`);
      return;
    }
    if (s.vpcId !== vpcId) problems.push(`${key} is in ${s.vpcId}, not in slipway:vpcId ${vpcId}`);
    if (s.mapPublicIpOnLaunch) {
      problems.push(
        `${key} gives instances public addresses; builders belong in private subnets (with a NAT gateway for egress)`,
      );
    }
  });
  return problems;
}

export class NetworkError extends Error {
  readonly code = 'invalid_network';
  constructor(readonly problems: string[]) {
    super(
      `The network configuration has ${problems.length} problem(s); nothing was changed:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
  }
}

/** A network whose existing subnets have been looked up (with their zones) and checked. */
export type ResolvedNetwork =
  | Extract<NetworkConfig, { mode: 'new' }>
  | { mode: 'existing'; vpcId: string; subnets: SubnetPlacement[] };

/**
 * Looks the user's subnets up before anything is declared, so a wrong subnet stops the update
 * with every problem listed and nothing changed. A new VPC needs no lookup.
 */
export async function resolveNetwork(network: NetworkConfig): Promise<ResolvedNetwork> {
  if (network.mode === 'new') return network;
  const found = await Promise.all(
    network.privateSubnetIds.map((id) =>
      aws.ec2.getSubnet({ id }).then(
        (s) => ({
          id,
          vpcId: s.vpcId,
          zone: s.availabilityZone,
          mapPublicIpOnLaunch: s.mapPublicIpOnLaunch,
        }),
        () => ({ id, missing: true as const }),
      ),
    ),
  );
  const problems = subnetProblems(network.vpcId, found);
  if (problems.length > 0) throw new NetworkError(problems);
  return {
    mode: 'existing',
    vpcId: network.vpcId,
    subnets: found.flatMap((s) => ('missing' in s ? [] : [{ id: s.id, zone: s.zone }])),
  };
}

export interface NetworkArgs {
  network: ResolvedNetwork;
  buildkitPort: number;
  buildkitIngressCidrs: string[];
  builderEgress: 'web' | 'all';
  controlPlaneUrl: string;
  tags: Record<string, string>;
}

export class Network extends pulumi.ComponentResource {
  readonly vpcId: pulumi.Output<string>;
  /** Private subnets with their zones, where builders and the agent run. */
  readonly privateSubnets: pulumi.Output<SubnetPlacement[]>;
  readonly builderSecurityGroup: aws.ec2.SecurityGroup;
  readonly agentSecurityGroup: aws.ec2.SecurityGroup;
  readonly imageBuildSecurityGroup: aws.ec2.SecurityGroup;

  constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super('slipway:aws:Network', name, {}, opts);
    const net = args.network;
    if (net.mode === 'new') {
      const vpc = new awsx.ec2.Vpc(name, newVpcArgs(net, args.tags), { parent: this });
      this.vpcId = vpc.vpcId;
      // awsx reports subnet ids; their zones come from AWS.
      this.privateSubnets = vpc.privateSubnetIds.apply((ids) =>
        Promise.all(
          ids.map((id) =>
            aws.ec2
              .getSubnet({ id }, { parent: this })
              .then((s) => ({ id, zone: s.availabilityZone })),
          ),
        ),
      );
    } else {
      this.vpcId = pulumi.output(net.vpcId);
      this.privateSubnets = pulumi.output(net.subnets);
    }

    const group = (
      role: string,
      description: string,
      ingress: SecurityRuleSpec[],
      egress: SecurityRuleSpec[],
    ) => {
      const sg = new aws.ec2.SecurityGroup(
        `${name}-${role}`,
        { vpcId: this.vpcId, description, tags: { ...args.tags, Name: `slipway-${role}` } },
        { parent: this },
      );
      ingress.forEach((rule, i) => {
        new aws.vpc.SecurityGroupIngressRule(
          `${name}-${role}-in-${i}`,
          {
            securityGroupId: sg.id,
            description: rule.description,
            ipProtocol: rule.protocol,
            fromPort: rule.fromPort,
            toPort: rule.toPort,
            [cidrKey(rule.cidr)]: rule.cidr,
            tags: args.tags,
          },
          { parent: sg },
        );
      });
      egress.forEach((rule, i) => {
        new aws.vpc.SecurityGroupEgressRule(
          `${name}-${role}-out-${i}`,
          {
            securityGroupId: sg.id,
            description: rule.description,
            ipProtocol: rule.protocol,
            fromPort: rule.fromPort,
            toPort: rule.toPort,
            [cidrKey(rule.cidr)]: rule.cidr,
            tags: args.tags,
          },
          { parent: sg },
        );
      });
      return sg;
    };

    this.builderSecurityGroup = group(
      'builders',
      'Slipway builders: BuildKit from the named CIDRs only',
      builderIngressRules(args.buildkitPort, args.buildkitIngressCidrs),
      builderEgressRules(args.builderEgress, args.controlPlaneUrl),
    );
    this.agentSecurityGroup = group(
      'agent',
      'Slipway cloud-agent: outbound HTTPS only',
      [],
      agentEgressRules(args.controlPlaneUrl),
    );
    this.imageBuildSecurityGroup = group(
      'image-build',
      'Slipway image builds: outbound HTTP(S) only',
      [],
      imageBuildEgressRules(),
    );

    this.registerOutputs({ vpcId: this.vpcId, privateSubnets: this.privateSubnets });
  }
}
