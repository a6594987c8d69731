// Where the cloud-agent keeps things under its data directory (docs/components.md): one Pulumi
// work directory, PULUMI_HOME and file backend per connection, and for the local provider one
// directory per machine and per volume.
import path from 'node:path';

export interface StackLayout {
  /** The engine's working directory: Pulumi.yaml and the stack settings. */
  workDir: string;
  pulumiHome: string;
  /** The file:// backend of a local connection. */
  backendDir: string;
  /** The generated passphrase of a local connection's secrets, mode 0600. */
  passphraseFile: string;
}

export function stackLayout(dataDir: string, connectionId: string): StackLayout {
  const root = path.join(dataDir, 'stacks', connectionId);
  return {
    workDir: path.join(root, 'work'),
    pulumiHome: path.join(root, 'home'),
    backendDir: path.join(root, 'state'),
    passphraseFile: path.join(root, 'passphrase'),
  };
}

export function machinesDir(dataDir: string): string {
  return path.join(dataDir, 'machines');
}

export function machineDir(dataDir: string, machineId: string): string {
  return path.join(machinesDir(dataDir), machineId);
}

export function volumesDir(dataDir: string): string {
  return path.join(dataDir, 'volumes');
}

export function volumeDir(dataDir: string, volumeId: string): string {
  return path.join(volumesDir(dataDir), volumeId);
}
