// The machine-agent's state directory: its server key, its machine token and where BuildKit's
// files go. Everything is written atomically (temp file, fsync, rename) and secrets are 0600 in
// a 0700 directory, so a crash at any point leaves either the old or the new file, and a
// stopped-and-started machine resumes without registering again.
import { chmod, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../common/fs';
import { idSchema, tokenPattern } from '../common/protocol';
import { MachineAgentError } from './errors';

const identitySchema = z.object({
  machineId: idSchema('machine'),
  machineToken: z.string().regex(tokenPattern),
  apiUrl: z.string(),
  healthIntervalSeconds: z.number().int().min(1),
  registeredAt: z.string(),
});
export type MachineIdentity = z.infer<typeof identitySchema>;

export class StateDir {
  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<StateDir> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    const state = new StateDir(path.resolve(dir));
    await mkdir(state.buildkitDir, { recursive: true, mode: 0o700 });
    return state;
  }

  get serverKeyFile(): string {
    return path.join(this.dir, 'server-key.pem');
  }

  get identityFile(): string {
    return path.join(this.dir, 'machine.json');
  }

  /** buildkitd.toml, certificates, pid file and log. */
  get buildkitDir(): string {
    return path.join(this.dir, 'buildkit');
  }

  /** AWS: where block volumes are mounted, one directory per volume id. */
  get mountsDir(): string {
    return path.join(this.dir, 'volumes');
  }

  async readIdentity(): Promise<MachineIdentity | undefined> {
    let text: string;
    try {
      text = await readFile(this.identityFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const parsed = identitySchema.safeParse(JSON.parse(text));
    if (!parsed.success) {
      throw new MachineAgentError(
        'state_mismatch',
        `${this.identityFile} is not a machine identity written by this agent; move the state directory aside to start over (the machine will need a new registration token)`,
      );
    }
    return parsed.data;
  }

  async writeIdentity(identity: MachineIdentity): Promise<void> {
    await writeFileAtomic(this.identityFile, JSON.stringify(identity, null, 2) + '\n');
  }

  async writeServerKey(pem: string): Promise<void> {
    await writeFileAtomic(this.serverKeyFile, pem);
  }

  async readServerKey(): Promise<string> {
    return readFile(this.serverKeyFile, 'utf8');
  }
}
