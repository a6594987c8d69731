// The connection's EC2 resources seen through the EC2 API rather than Pulumi: builders and
// cache volumes carrying the connection's tag, their states, addresses, zones and attachments,
// and the removal of those the stack does not hold (left by an update that crashed).
import {
  DeleteVolumeCommand,
  DetachVolumeCommand,
  EC2Client,
  TerminateInstancesCommand,
  paginateDescribeInstances,
  paginateDescribeVolumes,
  waitUntilVolumeAvailable,
  type Instance,
  type Tag,
  type Volume,
  type VolumeAttachment,
} from '@aws-sdk/client-ec2';
import type { Logger } from 'pino';
import type { FleetInventory, ObservedMachine, ObservedVolume } from '../provider';
import { slipwayTags } from '../../stacks/tags';

export interface Ec2FleetOptions {
  connectionId: string;
  region: string;
  /** An EC2 endpoint other than AWS's own (the emulator in tests). */
  endpoint?: string;
  logger: Logger;
}

const liveInstanceStates = ['pending', 'running', 'stopping', 'stopped', 'shutting-down'];

function tag(tags: Tag[] | undefined, key: string): string | undefined {
  return tags?.find((t) => t.Key === key)?.Value;
}

function machineState(instance: Instance): ObservedMachine['state'] {
  switch (instance.State?.Name) {
    case 'pending':
    case 'running':
    case 'stopping':
    case 'stopped':
      return instance.State.Name;
    default:
      return 'terminated'; // shutting-down or terminated
  }
}

function volumeState(volume: Volume): ObservedVolume['state'] {
  switch (volume.State) {
    case 'creating':
    case 'available':
    case 'in-use':
    case 'deleting':
      return volume.State;
    default:
      return 'missing'; // deleted, or in error
  }
}

export class Ec2Fleet {
  private readonly client: EC2Client;

  constructor(private readonly opts: Ec2FleetOptions) {
    this.client = new EC2Client({
      region: opts.region,
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    });
  }

  private connectionFilter() {
    return { Name: `tag:${slipwayTags.connection}`, Values: [this.opts.connectionId] };
  }

  /** Builder instances of the connection (terminated ones are gone already). */
  async instances(): Promise<Instance[]> {
    const found: Instance[] = [];
    const pages = paginateDescribeInstances(
      { client: this.client },
      {
        Filters: [
          this.connectionFilter(),
          { Name: 'tag-key', Values: [slipwayTags.machine] },
          { Name: 'instance-state-name', Values: liveInstanceStates },
        ],
      },
    );
    for await (const page of pages) {
      for (const r of page.Reservations ?? []) found.push(...(r.Instances ?? []));
    }
    return found;
  }

  /** Cache volumes of the connection (root volumes carry no slipway:volume tag). */
  async volumes(): Promise<Volume[]> {
    const found: Volume[] = [];
    const pages = paginateDescribeVolumes(
      { client: this.client },
      { Filters: [this.connectionFilter(), { Name: 'tag-key', Values: [slipwayTags.volume] }] },
    );
    for await (const page of pages) found.push(...(page.Volumes ?? []));
    return found;
  }

  /**
   * What exists, one entry per machine and volume id. Should a crash have left two instances
   * for one machine, the one the stack holds is reported (the other is an orphan).
   */
  async observe(
    stack?: FleetInventory,
  ): Promise<{ machines: ObservedMachine[]; volumes: ObservedVolume[] }> {
    const [instances, volumes] = await Promise.all([this.instances(), this.volumes()]);
    const inStack = new Set<string | undefined>(
      Object.values(stack?.machines ?? {}).map((m) => m.providerId),
    );
    const machines = new Map<string, ObservedMachine>();
    const machineOfInstance = new Map<string, string>();
    for (const i of instances) {
      const id = tag(i.Tags, slipwayTags.machine) as string;
      machineOfInstance.set(i.InstanceId ?? '', id);
      if (machines.has(id) && !inStack.has(i.InstanceId)) continue;
      machines.set(id, {
        id,
        state: machineState(i),
        ...(i.PrivateIpAddress ? { address: i.PrivateIpAddress } : {}),
        ...(i.Placement?.AvailabilityZone ? { zone: i.Placement.AvailabilityZone } : {}),
        ...(i.InstanceId ? { providerId: i.InstanceId } : {}),
      });
    }
    const observedVolumes = volumes.map((v): ObservedVolume => {
      const attachedInstance = v.Attachments?.find((a) => a.State !== 'detached')?.InstanceId;
      const attachedTo = attachedInstance ? machineOfInstance.get(attachedInstance) : undefined;
      return {
        id: tag(v.Tags, slipwayTags.volume) as string,
        state: volumeState(v),
        ...(v.AvailabilityZone ? { zone: v.AvailabilityZone } : {}),
        ...(attachedTo ? { attachedTo } : {}),
        ...(v.VolumeId ? { providerId: v.VolumeId } : {}),
      };
    });
    return { machines: [...machines.values()], volumes: observedVolumes };
  }

  /** Terminates instances and deletes volumes of the connection that the stack does not hold. */
  async removeOrphans(stack: FleetInventory): Promise<string[]> {
    const log = this.opts.logger;
    const keepInstances = new Set<string>(Object.values(stack.machines).map((m) => m.providerId));
    const keepVolumes = new Set(Object.values(stack.volumes).map((v) => v.providerId));
    const removed: string[] = [];

    const orphanInstances = (await this.instances()).filter(
      (i) => i.InstanceId && !keepInstances.has(i.InstanceId) && i.State?.Name !== 'shutting-down',
    );
    const terminated = new Set(orphanInstances.map((i) => i.InstanceId as string));
    if (terminated.size > 0) {
      log.warn(
        { instances: [...terminated] },
        'terminating builder instances the stack does not hold',
      );
      await this.client.send(new TerminateInstancesCommand({ InstanceIds: [...terminated] }));
      for (const i of orphanInstances) {
        removed.push(`instance ${i.InstanceId} (${tag(i.Tags, slipwayTags.machine)})`);
      }
    }

    // Listed after the terminations: their volumes are detaching by themselves now.
    const orphanVolumes = (await this.volumes()).filter(
      (v) => v.VolumeId && !keepVolumes.has(v.VolumeId) && v.State !== 'deleting',
    );
    for (const v of orphanVolumes) {
      const volumeId = v.VolumeId as string;
      log.warn({ volume: volumeId }, 'deleting a cache volume the stack does not hold');
      const attachment = v.Attachments?.find((a) => a.State !== 'detached');
      if (attachment) {
        if (!terminated.has(attachment.InstanceId ?? ''))
          await this.forceDetach(volumeId, attachment);
        await waitUntilVolumeAvailable(
          { client: this.client, maxWaitTime: 300, minDelay: 1, maxDelay: 10 },
          { VolumeIds: [volumeId] },
        );
      }
      await this.client.send(new DeleteVolumeCommand({ VolumeId: volumeId }));
      removed.push(`volume ${volumeId} (${tag(v.Tags, slipwayTags.volume)})`);
    }
    return removed;
  }

  private async forceDetach(volumeId: string, attachment: VolumeAttachment): Promise<void> {
    try {
      await this.client.send(
        new DetachVolumeCommand({
          VolumeId: volumeId,
          InstanceId: attachment.InstanceId,
          Device: attachment.Device,
          Force: true,
        }),
      );
    } catch (err) {
      // Detached meanwhile: what we wanted.
      if ((err as { name?: string }).name !== 'InvalidAttachment.NotFound') throw err;
    }
  }

  close(): void {
    this.client.destroy();
  }
}
