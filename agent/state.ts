// What the cloud-agent keeps in its data directory across restarts: its id (the control plane's
// lease is keyed by it), the connection it serves, what it last applied, and the reports not yet
// delivered (an outbox), so a crash loses no audit record. Written atomically, mode 0600.
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../common/fs';
import { z } from 'zod';
import { applyReportSchema, driftReportSchema, providerSchema } from '../common/protocol';

const stateSchema = z.object({
  agentId: z.string().uuid(),
  connection: z
    .object({ id: z.string(), provider: providerSchema, region: z.string().nullable() })
    .nullable()
    .default(null),
  /** The generation and fleet digest of the last successful apply. */
  applied: z.object({ generation: z.number().int(), digest: z.string() }).nullable().default(null),
  outbox: z
    .object({
      applies: z.array(applyReportSchema).default([]),
      drift: driftReportSchema.nullable().default(null),
    })
    .default({ applies: [], drift: null }),
});
export type AgentState = z.infer<typeof stateSchema>;
export type ApplyReport = z.infer<typeof applyReportSchema>;
export type DriftReport = z.infer<typeof driftReportSchema>;

export class AgentStateError extends Error {
  readonly code = 'invalid_state';
}

/** The most apply reports one sync carries (the control plane's limit). */
export const appliesPerSync = 20;

export class AgentStateStore {
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly file: string,
    private state: AgentState,
  ) {}

  static async open(dataDir: string): Promise<AgentStateStore> {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const file = path.join(dataDir, 'agent.json');
    if (!existsSync(file)) {
      const store = new AgentStateStore(file, stateSchema.parse({ agentId: randomUUID() }));
      await store.save();
      return store;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      throw new AgentStateError(
        `${file} is unreadable (${(err as Error).message}); restore it, or remove it to start as a new agent`,
      );
    }
    const parsed = stateSchema.safeParse(raw);
    if (!parsed.success) {
      throw new AgentStateError(
        `${file} is not a cloud-agent state file (${parsed.error.issues[0]?.message}); restore it, or remove it to start as a new agent`,
      );
    }
    return new AgentStateStore(file, parsed.data);
  }

  get agentId(): string {
    return this.state.agentId;
  }
  get connection(): AgentState['connection'] {
    return this.state.connection;
  }
  get applied(): AgentState['applied'] {
    return this.state.applied;
  }

  /** The reports the next sync carries, oldest first. */
  pending(): { applies: ApplyReport[]; drift: DriftReport | null } {
    return {
      applies: this.state.outbox.applies.slice(0, appliesPerSync),
      drift: this.state.outbox.drift,
    };
  }

  hasPending(): boolean {
    return this.state.outbox.applies.length > 0 || this.state.outbox.drift !== null;
  }

  setConnection(connection: NonNullable<AgentState['connection']>): Promise<void> {
    this.state.connection = connection;
    return this.save();
  }

  setApplied(applied: NonNullable<AgentState['applied']>): Promise<void> {
    this.state.applied = applied;
    return this.save();
  }

  addApply(report: ApplyReport): Promise<void> {
    this.state.outbox.applies.push(report);
    return this.save();
  }

  setDrift(report: DriftReport): Promise<void> {
    this.state.outbox.drift = report;
    return this.save();
  }

  /** Drops what a sync delivered (the control plane ignores a report it already has). */
  delivered(sent: { applies: ApplyReport[]; drift: DriftReport | null }): Promise<void> {
    if (sent.applies.length === 0 && !sent.drift) return Promise.resolve(); // nothing to drop
    const outbox = this.state.outbox;
    outbox.applies = outbox.applies.filter((a) => !sent.applies.includes(a));
    if (sent.drift && outbox.drift === sent.drift) outbox.drift = null;
    return this.save();
  }

  /** Writes are queued so that the file always holds the latest state, whole. */
  private save(): Promise<void> {
    const text = JSON.stringify(this.state, null, 2);
    const write = () => writeFileAtomic(this.file, text);
    this.writing = this.writing.then(write, write);
    return this.writing;
  }
}
