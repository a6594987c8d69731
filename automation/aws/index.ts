// The AWS provider: builders are EC2 instances and cache volumes are EBS volumes in the user's
// account, converged through @pulumi/aws; the EC2 API observes them and removes orphans.
import path from 'node:path';
import type { Logger } from 'pino';
import { toolsDir } from '../../common/tools';
import type { DesiredFleet } from '../../common/protocol';
import type { CapacityFailure, ConvergeOutcome } from '../outcome';
import { urnName, urnType } from '../outcome';
import { inventoryOf, type FleetProvider, type ProviderPlugin } from '../provider';
import { Ec2Fleet } from './observe';
import { awsFleetProgram } from './program';
import { awsFleetSpec } from './spec';

export interface AwsProviderOptions {
  connectionId: string;
  region: string;
  /** An EC2 endpoint other than AWS's own (the emulator in tests). */
  ec2Endpoint?: string;
  logger: Logger;
}

/**
 * The AWS provider plugin matching the installed @pulumi/aws, where
 * `PULUMI_HOME=<tools dir> pulumi plugin install resource aws v<version>` puts it (the agent
 * image does that at build time; the engine never downloads plugins here).
 */
export function awsProviderPlugin(tools: string = toolsDir()): ProviderPlugin {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { version } = require('@pulumi/aws/package.json') as { version: string };
  return {
    name: 'aws',
    version,
    dir: path.join(tools, 'plugins', `resource-aws-v${version}`),
    install: `PULUMI_HOME=${tools} pulumi plugin install resource aws v${version} (images/agent/Dockerfile does it)`,
  };
}

/** EC2 error codes that mean "no capacity for this machine now", not a broken fleet. */
const capacityErrors =
  /InsufficientInstanceCapacity|InsufficientCapacityOnHost|InstanceLimitExceeded|VcpuLimitExceeded|InsufficientFreeAddressesInSubnet|Unsupported/;
const machineTypes = new Set([
  'aws:ec2/instance:Instance',
  'aws:ec2transitgateway/instanceState:InstanceState',
]);

/** The machines whose instance could not be launched or started for lack of capacity. */
export function awsCapacityFailures(
  fleet: DesiredFleet,
  outcome: ConvergeOutcome,
): CapacityFailure[] {
  const platforms = new Map(fleet.machines.map((m) => [m.id, m.platform]));
  const failures = new Map<string, CapacityFailure>();
  for (const d of outcome.diagnostics) {
    if (d.severity !== 'error' || !d.urn || !machineTypes.has(urnType(d.urn))) continue;
    if (!capacityErrors.test(d.message)) continue;
    const machineId = urnName(d.urn);
    const platform = platforms.get(machineId);
    if (!platform || failures.has(machineId)) continue;
    failures.set(machineId, { machineId, platform, reason: d.message.slice(0, 2000) });
  }
  return [...failures.values()];
}

export function createAwsProvider(opts: AwsProviderOptions): FleetProvider {
  const ec2 = new Ec2Fleet({
    connectionId: opts.connectionId,
    region: opts.region,
    logger: opts.logger,
    ...(opts.ec2Endpoint ? { endpoint: opts.ec2Endpoint } : {}),
  });
  return {
    kind: 'aws',
    engineEnv: {},
    plugins: [awsProviderPlugin()],
    program(fleet, ctx) {
      const spec = awsFleetSpec(fleet, ctx.current);
      return {
        program: awsFleetProgram(spec, {
          connectionId: opts.connectionId,
          controlPlaneUrl: ctx.controlPlaneUrl,
        }),
        capacityFailures: spec.capacityFailures,
      };
    },
    inventory: (resources) =>
      inventoryOf(resources, {
        machine: 'aws:ec2/instance:Instance',
        volume: 'aws:ebs/volume:Volume',
      }),
    capacityFailures: awsCapacityFailures,
    observe: (stack) => ec2.observe(stack),
    removeOrphans: (stack) => ec2.removeOrphans(stack),
  };
}
