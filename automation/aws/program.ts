// The AWS fleet program: a thin layer that turns the AWS fleet spec into @pulumi/aws resources.
// Instances come from the connection's launch template, require IMDSv2 and carry the
// connection's tags from their creation; volumes are gp3 and encrypted, in their instance's zone.
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import type { PulumiFn } from '@pulumi/pulumi/automation';
import type { AwsFleetSpec } from './spec';
import { slipwayTags } from '../../stacks/tags';
import { bootstrapUserData } from './user-data';

export interface AwsProgramContext {
  connectionId: string;
  controlPlaneUrl: string;
}

export function awsFleetProgram(spec: AwsFleetSpec, ctx: AwsProgramContext): PulumiFn {
  return async () => {
    const provider = new aws.Provider('aws', { region: spec.region as aws.Region });
    const opts = { provider };
    const connectionTags = { [slipwayTags.connection]: ctx.connectionId };

    const volumes: Record<string, aws.ebs.Volume> = {};
    for (const v of spec.volumes) {
      volumes[v.volumeId] = new aws.ebs.Volume(
        v.volumeId,
        {
          availabilityZone: v.zone,
          size: v.sizeGb,
          type: 'gp3',
          encrypted: true,
          tags: {
            ...connectionTags,
            [slipwayTags.volume]: v.volumeId,
            [slipwayTags.project]: v.projectId,
            Name: `slipway-${v.volumeId}`,
          },
        },
        opts,
      );
    }

    const instances: Record<string, aws.ec2.Instance> = {};
    const powerStates: Record<string, aws.ec2transitgateway.InstanceState> = {};
    for (const m of spec.instances) {
      const tags = {
        ...connectionTags,
        [slipwayTags.machine]: m.machineId,
        Name: `slipway-${m.machineId}`,
      };
      const instance = new aws.ec2.Instance(
        m.machineId,
        {
          launchTemplate: { id: m.launchTemplateId, version: '$Default' },
          subnetId: m.subnetId,
          metadataOptions: {
            httpTokens: 'required',
            httpEndpoint: 'enabled',
            httpPutResponseHopLimit: 1,
          },
          // The registration token is single-use and must not show in state, diffs or logs.
          userData: pulumi.secret(
            bootstrapUserData({
              apiUrl: ctx.controlPlaneUrl,
              machineId: m.machineId,
              registrationToken: m.registrationToken,
              platform: m.platform,
              buildkitPort: spec.buildkitPort,
            }),
          ),
          tags,
          volumeTags: tags,
        },
        // User data runs once at first boot; the token it carries disappears from the fleet
        // after registration, which must not touch the instance.
        { ...opts, ignoreChanges: ['userData'] },
      );
      instances[m.machineId] = instance;
      powerStates[m.machineId] = new aws.ec2transitgateway.InstanceState(
        m.machineId,
        { instanceId: instance.id, state: m.state },
        opts,
      );
    }

    const attachments: Record<string, aws.ec2.VolumeAttachment> = {};
    for (const a of spec.attachments) {
      const instance = instances[a.machineId];
      const volume = volumes[a.volumeId];
      if (!instance || !volume) continue;
      attachments[a.volumeId] = new aws.ec2.VolumeAttachment(
        a.volumeId,
        {
          instanceId: instance.id,
          volumeId: volume.id,
          deviceName: a.deviceName,
          stopInstanceBeforeDetaching: true,
        },
        // Moving a volume to another machine detaches it first: EBS attaches to one at a time.
        { ...opts, deleteBeforeReplace: true },
      );
    }

    return {
      machines: Object.fromEntries(
        Object.entries(instances).map(([id, i]) => [
          id,
          pulumi
            .all([i.id, i.availabilityZone, powerStates[id]?.state])
            .apply(([providerId, zone, state]) => ({ providerId, zone, state })),
        ]),
      ),
      volumes: Object.fromEntries(
        Object.entries(volumes).map(([id, v]) => [
          id,
          pulumi
            .all([v.id, v.availabilityZone, attachments[id]?.instanceId])
            .apply(([providerId, zone, attachedTo]) => ({ providerId, zone, attachedTo })),
        ]),
      ),
    };
  };
}
