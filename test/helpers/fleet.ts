// Desired fleets for tests, shaped as the control plane sends them (common/protocol.ts).
import { randomBytes } from 'node:crypto';
import type {
  AwsConnectionConfig,
  DesiredFleet,
  DesiredMachine,
  DesiredVolume,
} from '../../common/protocol';

export const connectionId = 'con_testconnection01';

export function registrationToken(): string {
  return `swr_${randomBytes(32).toString('base64url')}`;
}

export function machine(id: string, over: Partial<DesiredMachine> = {}): DesiredMachine {
  return {
    id,
    platform: 'linux/amd64',
    state: 'running',
    volumeId: null,
    registrationToken: registrationToken(),
    zone: null,
    ...over,
  };
}

export function volume(id: string, over: Partial<DesiredVolume> = {}): DesiredVolume {
  return {
    id,
    projectId: 'prj_testproject01',
    platform: 'linux/amd64',
    sizeGb: 20,
    zone: null,
    ...over,
  };
}

export const awsConfig: AwsConnectionConfig = {
  region: 'eu-west-1',
  launchTemplates: { 'linux/amd64': 'lt-0123456789abcdef0', 'linux/arm64': 'lt-0fedcba9876543210' },
  subnets: [
    { id: 'subnet-0aaaaaaaaaaaaaaa1', zone: 'eu-west-1a' },
    { id: 'subnet-0bbbbbbbbbbbbbbb2', zone: 'eu-west-1b' },
  ],
  buildkitPort: 8372,
};

export function fleet(over: Partial<DesiredFleet> = {}): DesiredFleet {
  const provider = over.provider ?? 'local';
  return {
    connectionId,
    provider,
    generation: 1,
    machines: [],
    volumes: [],
    aws: provider === 'aws' ? awsConfig : null,
    ...over,
  };
}
