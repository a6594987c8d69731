// What the dashboard derives from API data: phase segments, acquire times, build counts over
// time, connection health and diff line kinds. Pure functions of their inputs and `now`, so the
// pages stay thin and these are unit-tested in Node (test/dashboard-model.test.ts).
import type { AcquirePath, AuditRecord, Build, Builder, Connection } from '../../common/protocol';

const ms = (iso: string) => Date.parse(iso);

// ---------------------------------------------------------------------------------------------
// Phases of one builder request and of the build that used it

export type PhaseName = 'queued' | 'provisioning' | 'booting' | 'starting' | 'handoff' | 'build';

export const phaseLabels: Record<PhaseName, string> = {
  queued: 'waiting for the agent',
  provisioning: 'creating or starting the machine',
  booting: 'machine registering',
  starting: 'starting BuildKit',
  handoff: 'answering the CLI',
  build: 'building',
};

/** Each milestone ends the phase named beside it; a skipped milestone (null) merges phases. */
const milestones: Array<[keyof Builder['phases'], PhaseName]> = [
  ['pickedUpAt', 'queued'],
  ['machineStartedAt', 'provisioning'],
  ['registeredAt', 'booting'],
  ['readyAt', 'starting'],
  ['answeredAt', 'handoff'],
];

export interface PhaseSegment {
  phase: PhaseName;
  /**
   * The phases this segment stands for: more than one when a milestone between them was not
   * recorded (a machine that registered before the agent reported its apply).
   */
  covers: PhaseName[];
  startMs: number;
  durationMs: number;
  /** True while the phase is still going on (its end is `now`). */
  open: boolean;
}

/** "creating or starting the machine + machine registering" for a merged segment. */
export function segmentLabel(seg: Pick<PhaseSegment, 'covers'>): string {
  return seg.covers.map((p) => phaseLabels[p]).join(' + ');
}

/**
 * The phases of a build on one builder, as consecutive segments from the request on. Phases
 * before the first milestone reached were not part of its path (a hot builder is never picked
 * up by the agent) and are left out; a milestone missing after that merges its phase into the
 * next one reached. The build phase lasts `buildMs` as reported by the CLI, or until the build
 * finished, or until now while it runs.
 */
export function builderSegments(build: Build, builder: Builder, now: number): PhaseSegment[] {
  const segments: PhaseSegment[] = [];
  const one = (phase: PhaseName, startMs: number, durationMs: number, open: boolean) =>
    segments.push({ phase, covers: [phase], startMs, durationMs, open });
  let cursor = ms(builder.phases.requestedAt);
  let skipped: PhaseName[] = [];
  for (const [field, phase] of milestones) {
    const at = builder.phases[field];
    if (at === null) {
      if (segments.length > 0) skipped.push(phase);
      continue;
    }
    const end = Math.max(cursor, ms(at as string));
    segments.push({
      phase,
      covers: [...skipped, phase],
      startMs: cursor,
      durationMs: end - cursor,
      open: false,
    });
    skipped = [];
    cursor = end;
  }
  const finished = build.finishedAt ? ms(build.finishedAt) : null;
  if (builder.phases.answeredAt !== null) {
    if (build.buildMs !== null) {
      one('build', cursor, build.buildMs, false);
    } else if (finished !== null) {
      one('build', cursor, Math.max(0, finished - cursor), false);
    } else if (build.status === 'running' || build.status === 'pending') {
      one('build', cursor, Math.max(0, now - cursor), true);
    }
  } else if (builder.state === 'pending') {
    // Still waiting: the phase after the last milestone reached is going on now.
    const reached = milestones.map(([field]) => builder.phases[field] !== null);
    const next = milestones[reached.lastIndexOf(true) + 1];
    if (next) one(next[1], cursor, Math.max(0, now - cursor), true);
  }
  return segments;
}

/** Time from the request to the CLI's ready answer, or null while not answered. */
export function acquireMs(builder: Builder): number | null {
  const end = builder.phases.answeredAt ?? builder.phases.readyAt;
  if (end === null) return null;
  return Math.max(0, ms(end) - ms(builder.phases.requestedAt));
}

export interface AcquirePoint {
  buildId: string;
  at: number;
  ms: number;
  path: AcquirePath;
  platform: string;
}

/** One point per builder that was handed out, for the acquire time chart. */
export function acquirePoints(builds: Build[]): AcquirePoint[] {
  const points: AcquirePoint[] = [];
  for (const build of builds) {
    for (const builder of build.builders) {
      const took = acquireMs(builder);
      if (took === null || builder.path === null) continue;
      points.push({
        buildId: build.id,
        at: ms(builder.phases.requestedAt),
        ms: took,
        path: builder.path,
        platform: builder.platform,
      });
    }
  }
  return points.sort((a, b) => a.at - b.at);
}

// ---------------------------------------------------------------------------------------------
// Build counts over time

const bucketSizes = [
  60_000,
  5 * 60_000,
  15 * 60_000,
  3_600_000,
  6 * 3_600_000,
  86_400_000,
  7 * 86_400_000,
];

export interface CountBucket {
  start: number;
  size: number;
  succeeded: number;
  failed: number;
  other: number;
}

/**
 * Builds per time bucket, split by outcome. The bucket size is the smallest that covers the
 * span of the builds (up to now) in at most `maxBuckets` buckets.
 */
export function buildCounts(builds: Build[], now: number, maxBuckets = 24): CountBucket[] {
  if (builds.length === 0) return [];
  const times = builds.map((b) => ms(b.createdAt));
  const first = Math.min(...times);
  const span = Math.max(now, ...times) - first;
  const size =
    bucketSizes.find((s) => span / s < maxBuckets) ?? bucketSizes[bucketSizes.length - 1]!;
  const start = Math.floor(first / size) * size;
  const count = Math.floor((Math.max(now, ...times) - start) / size) + 1;
  const buckets: CountBucket[] = Array.from({ length: count }, (_, i) => ({
    start: start + i * size,
    size,
    succeeded: 0,
    failed: 0,
    other: 0,
  }));
  builds.forEach((b, i) => {
    const bucket = buckets[Math.floor((times[i]! - start) / size)]!;
    if (b.status === 'succeeded') bucket.succeeded++;
    else if (b.status === 'failed') bucket.failed++;
    else bucket.other++;
  });
  return buckets;
}

// ---------------------------------------------------------------------------------------------
// Connection health, as one word and a sentence

export type Health = 'healthy' | 'converging' | 'failing' | 'offline' | 'no-agent';

export function connectionHealth(c: Connection, now: number): { health: Health; why: string } {
  const agent = c.agent;
  if (!agent) return { health: 'no-agent', why: 'no agent has connected yet' };
  if (ms(agent.leaseExpiresAt) < now) {
    return {
      health: 'offline',
      why: `agent ${agent.agentId} has not synced since its lease ended`,
    };
  }
  if (agent.lastApplyResult === 'failed') {
    return { health: 'failing', why: agent.lastError ?? 'the last apply failed' };
  }
  if (agent.appliedGeneration < c.generation) {
    return {
      health: 'converging',
      why: `applying generation ${c.generation} (applied ${agent.appliedGeneration})`,
    };
  }
  return { health: 'healthy', why: `generation ${c.generation} applied` };
}

// ---------------------------------------------------------------------------------------------
// Audit records

/** What a line of the Pulumi preview diff does, from its leading marker. */
export type DiffLineKind = 'create' | 'delete' | 'update' | 'replace' | 'read' | 'plain';

const ansi = /\u001b\[[0-9;]*m/g;

export function diffLines(diff: string): Array<{ kind: DiffLineKind; text: string }> {
  return diff
    .replace(ansi, '')
    .replace(/\r\n/g, '\n')
    .replace(/\n+$/, '')
    .split('\n')
    .map((text) => {
      const marker = text.trimStart();
      let kind: DiffLineKind = 'plain';
      // Pulumi marks a replacement +-, its create ++ and its delete --.
      if (/^(\+-|\+\+|--)/.test(marker)) kind = 'replace';
      else if (marker.startsWith('+')) kind = 'create';
      else if (marker.startsWith('-')) kind = 'delete';
      else if (marker.startsWith('~')) kind = 'update';
      else if (marker.startsWith('>')) kind = 'read';
      return { kind, text };
    });
}

/** The change summary without the unchanged count, largest first ("create 2, update 1"). */
export function summaryChanges(record: Pick<AuditRecord, 'summary'>): Array<[string, number]> {
  return Object.entries(record.summary)
    .filter(([op, n]) => op !== 'same' && n > 0)
    .sort((a, b) => b[1] - a[1]);
}

// ---------------------------------------------------------------------------------------------
// Formatting

export function formatDuration(millis: number): string {
  if (millis < 1000) return `${Math.round(millis)} ms`;
  if (millis < 10_000) return `${(millis / 1000).toFixed(1)} s`;
  const both = (big: number, bigUnit: string, small: number, smallUnit: string) =>
    small ? `${big} ${bigUnit} ${small} ${smallUnit}` : `${big} ${bigUnit}`;
  const s = Math.round(millis / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return both(m, 'min', s % 60, 's');
  const h = Math.floor(m / 60);
  if (h < 48) return both(h, 'h', m % 60, 'min');
  return both(Math.floor(h / 24), 'd', h % 24, 'h');
}

export function formatAgo(iso: string | null, now: number): string {
  if (iso === null) return 'never';
  const d = now - ms(iso);
  return d < 1000 ? 'just now' : `${formatDuration(d)} ago`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 && i > 0 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}
