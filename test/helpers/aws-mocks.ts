// Pulumi mocks standing in for AWS (the cloud cannot be reached from tests): every resource the
// program declares is recorded with its inputs, and given the ids and outputs AWS would return.
import { createHash } from 'node:crypto';
import * as pulumi from '@pulumi/pulumi';

export const mockAccount = '111122223333';
export const mockRegion = 'eu-west-1';

export interface RecordedResource {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  id: string;
  state: Record<string, unknown>;
}

export interface MockSubnet {
  id: string;
  availabilityZone: string;
  vpcId: string;
  mapPublicIpOnLaunch: boolean;
}

const hex = (seed: string, length: number) =>
  createHash('sha256').update(seed).digest('hex').slice(0, length);

/** Ids and outputs shaped like AWS's, derived from the resource name so they are stable. */
function fake(type: string, name: string, inputs: Record<string, unknown>) {
  const arn = (service: string, resource: string, region = mockRegion) =>
    `arn:aws:${service}:${region}:${mockAccount}:${resource}`;
  switch (type) {
    case 'aws:ec2/launchTemplate:LaunchTemplate': {
      const id = `lt-0${hex(name, 16)}`;
      return { id, state: { arn: arn('ec2', `launch-template/${id}`), latestVersion: 1 } };
    }
    case 'aws:ec2/securityGroup:SecurityGroup': {
      const id = `sg-0${hex(name, 16)}`;
      return { id, state: { arn: arn('ec2', `security-group/${id}`) } };
    }
    case 'aws:s3/bucket:Bucket': {
      const bucket = `${String(inputs.bucketPrefix ?? 'bucket-')}${hex(name, 8)}`;
      return { id: bucket, state: { bucket, arn: `arn:aws:s3:::${bucket}` } };
    }
    case 'aws:kms/key:Key': {
      const h = hex(name, 32);
      const keyId = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
      return { id: keyId, state: { keyId, arn: arn('kms', `key/${keyId}`) } };
    }
    case 'aws:iam/role:Role':
      return { id: name, state: { name, arn: `arn:aws:iam::${mockAccount}:role/${name}` } };
    case 'aws:iam/instanceProfile:InstanceProfile':
      return {
        id: name,
        state: { name, arn: `arn:aws:iam::${mockAccount}:instance-profile/${name}` },
      };
    case 'aws:ssm/parameter:Parameter':
      return {
        id: String(inputs.name),
        state: { arn: arn('ssm', `parameter${String(inputs.name)}`), version: 1 },
      };
    case 'aws:cloudwatch/logGroup:LogGroup':
      return {
        id: String(inputs.name),
        state: { arn: arn('logs', `log-group:${String(inputs.name)}`) },
      };
    case 'aws:ecs/cluster:Cluster':
      return { id: name, state: { name, arn: arn('ecs', `cluster/${name}`) } };
    case 'aws:ecs/taskDefinition:TaskDefinition':
      return { id: name, state: { arn: arn('ecs', `task-definition/${String(inputs.family)}:1`) } };
    case 'aws:ecs/service:Service':
      return { id: name, state: { name } };
    case 'aws:imagebuilder/image:Image':
      return {
        id: name,
        state: {
          arn: arn('imagebuilder', `image/${name}/1.0.0/1`),
          outputResources: [
            { amis: [{ image: `ami-0${hex(name, 16)}`, region: mockRegion }], containers: [] },
          ],
        },
      };
    case 'aws:imagebuilder/component:Component':
    case 'aws:imagebuilder/imageRecipe:ImageRecipe':
    case 'aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration':
    case 'aws:imagebuilder/distributionConfiguration:DistributionConfiguration':
      return {
        id: name,
        state: { arn: arn('imagebuilder', `${type.split(':')[2]!.toLowerCase()}/${name}`) },
      };
    case 'awsx:ec2:Vpc':
      return {
        id: '',
        state: {
          vpcId: 'vpc-0aaaabbbbccccdddd',
          privateSubnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0bbbbbbbbbbbbbbb2'],
          publicSubnetIds: ['subnet-0ccccccccccccccc3', 'subnet-0ddddddddddddddd4'],
        },
      };
    default:
      return { id: `${name}-id`, state: {} };
  }
}

export class AwsMocks {
  readonly resources: RecordedResource[] = [];
  readonly subnets = new Map<string, MockSubnet>();

  constructor() {
    const defaults: MockSubnet[] = [
      {
        id: 'subnet-0aaaaaaaaaaaaaaa1',
        availabilityZone: 'eu-west-1a',
        vpcId: 'vpc-0aaaabbbbccccdddd',
        mapPublicIpOnLaunch: false,
      },
      {
        id: 'subnet-0bbbbbbbbbbbbbbb2',
        availabilityZone: 'eu-west-1b',
        vpcId: 'vpc-0aaaabbbbccccdddd',
        mapPublicIpOnLaunch: false,
      },
    ];
    for (const s of defaults) this.subnets.set(s.id, s);
  }

  async install(project = 'slipway-connection', stack = 'test'): Promise<void> {
    await pulumi.runtime.setMocks(
      {
        newResource: (args) => {
          const { id, state } = fake(args.type, args.name, args.inputs);
          const merged = { ...args.inputs, ...state };
          this.resources.push({
            type: args.type,
            name: args.name,
            inputs: args.inputs,
            id,
            state: merged,
          });
          return { id, state: merged };
        },
        call: (args) => {
          switch (args.token) {
            case 'aws:index/getCallerIdentity:getCallerIdentity':
              return {
                accountId: mockAccount,
                arn: `arn:aws:iam::${mockAccount}:user/test`,
                userId: 'AIDA',
              };
            case 'aws:index/getPartition:getPartition':
              return { partition: 'aws', dnsSuffix: 'amazonaws.com', id: 'aws' };
            case 'aws:index/getRegion:getRegion':
              return { region: mockRegion, name: mockRegion, id: mockRegion };
            case 'aws:ec2/getSubnet:getSubnet': {
              const subnet = this.subnets.get(String(args.inputs.id));
              if (!subnet) throw new Error(`InvalidSubnetID.NotFound: ${String(args.inputs.id)}`);
              return { ...subnet, cidrBlock: '10.80.0.0/19' };
            }
            default:
              throw new Error(`unexpected invoke ${args.token}`);
          }
        },
      },
      project,
      stack,
      false,
    );
  }

  /** Resources whose name starts with the given component name. */
  under(prefix: string): RecordedResource[] {
    return this.resources.filter((r) => r.name === prefix || r.name.startsWith(`${prefix}-`));
  }

  ofType(prefix: string, type: string): RecordedResource[] {
    return this.under(prefix).filter((r) => r.type === type);
  }
}

/**
 * The resolved value of an output (mocks resolve everything; nothing stays unknown). An error
 * thrown inside an apply rejects it, as it fails `pulumi up`.
 */
export function valueOf<T>(output: pulumi.Input<T>): Promise<T> {
  // Output's promise() is how the SDK's own tests read outputs; it is not in the typings.
  return (pulumi.output(output) as unknown as { promise(): Promise<T> }).promise();
}

/** Waits until every resource the program declared so far has been registered with the mocks. */
export function settled(): Promise<void> {
  // waitForRPCs is how the SDK waits for outstanding registrations; it is not in the typings.
  return (pulumi.runtime as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs();
}
