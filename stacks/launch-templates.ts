// The builders' launch templates, one per architecture, and the builders' role: IMDSv2 only
// (hop limit 1, so build containers cannot reach it), an encrypted gp3 root volume, the builder
// security group, and an instance profile whose role has no permissions at all.
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import type { Platform } from '../common/protocol';
import { archOf } from '../images/builder/image';
import { trustPolicyDocument } from './iam';
import { slipwayTags } from './tags';

export interface LaunchTemplateSpecInput {
  platform: Platform;
  instanceType: string;
  imageId: pulumi.Input<string>;
  securityGroupId: pulumi.Input<string>;
  instanceProfileArn: pulumi.Input<string>;
  rootVolumeGb: number;
  tags: Record<string, string>;
}

export function launchTemplateArgs(p: LaunchTemplateSpecInput): aws.ec2.LaunchTemplateArgs {
  return {
    namePrefix: `slipway-builder-${archOf(p.platform)}-`,
    description: `Slipway ${p.platform} builders`,
    imageId: p.imageId,
    instanceType: p.instanceType,
    vpcSecurityGroupIds: [p.securityGroupId],
    iamInstanceProfile: { arn: p.instanceProfileArn },
    metadataOptions: {
      httpEndpoint: 'enabled',
      httpTokens: 'required',
      httpPutResponseHopLimit: 1,
      instanceMetadataTags: 'disabled',
    },
    blockDeviceMappings: [
      {
        deviceName: '/dev/xvda',
        ebs: {
          volumeSize: p.rootVolumeGb,
          volumeType: 'gp3',
          encrypted: 'true',
          deleteOnTermination: 'true',
        },
      },
    ],
    ebsOptimized: 'true',
    monitoring: { enabled: false },
    updateDefaultVersion: true,
    tags: { ...p.tags, 'slipway:platform': p.platform },
  };
}

export interface BuilderLaunchTemplatesArgs {
  platforms: Platform[];
  instanceTypes: Record<Platform, string>;
  imageIds: Partial<Record<Platform, pulumi.Input<string>>>;
  securityGroupId: pulumi.Input<string>;
  rootVolumeGb: number;
  tags: Record<string, string>;
}

export class BuilderLaunchTemplates extends pulumi.ComponentResource {
  readonly templates: Partial<Record<Platform, aws.ec2.LaunchTemplate>> = {};
  readonly role: aws.iam.Role;
  readonly instanceProfile: aws.iam.InstanceProfile;

  constructor(
    name: string,
    args: BuilderLaunchTemplatesArgs,
    opts?: pulumi.ComponentResourceOptions,
  ) {
    super('slipway:aws:BuilderLaunchTemplates', name, {}, opts);
    // Builders have no AWS permissions: no policy is ever attached to this role.
    this.role = new aws.iam.Role(
      `${name}-role`,
      {
        description: 'Slipway builders: deliberately without permissions',
        assumeRolePolicy: JSON.stringify(trustPolicyDocument('ec2.amazonaws.com')),
        tags: { ...args.tags, [slipwayTags.role]: 'builder' },
      },
      { parent: this },
    );
    this.instanceProfile = new aws.iam.InstanceProfile(
      `${name}-profile`,
      { role: this.role.name, tags: args.tags },
      { parent: this },
    );
    for (const platform of args.platforms) {
      const imageId = args.imageIds[platform];
      if (imageId === undefined) throw new Error(`no builder image for ${platform}`);
      this.templates[platform] = new aws.ec2.LaunchTemplate(
        `${name}-${archOf(platform)}`,
        launchTemplateArgs({
          platform,
          instanceType: args.instanceTypes[platform],
          imageId,
          securityGroupId: args.securityGroupId,
          instanceProfileArn: this.instanceProfile.arn,
          rootVolumeGb: args.rootVolumeGb,
          tags: args.tags,
        }),
        { parent: this },
      );
    }
    this.registerOutputs({});
  }
}
