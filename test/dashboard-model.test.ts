// What the dashboard derives from API data: the phase bars, acquire times, build counts over
// time, connection health and the coloring of Pulumi diffs.
import test from 'ava';
import type { Build, Builder, Connection } from '../common/protocol';
import {
  acquirePoints,
  builderSegments,
  buildCounts,
  connectionHealth,
  diffLines,
  formatDuration,
  segmentLabel,
  summaryChanges,
} from '../dashboard/src/model';

const t0 = Date.parse('2025-01-01T10:00:00.000Z');
const at = (ms: number) => new Date(t0 + ms).toISOString();

function builder(phases: Partial<Builder['phases']>, extra: Partial<Builder> = {}): Builder {
  return {
    platform: 'linux/amd64',
    state: 'ready',
    reason: '',
    retryAfterMs: null,
    path: 'cold',
    machineId: 'mch_aaaaaaaa',
    endpoint: '127.0.0.1:1234',
    serverName: null,
    caCertificate: null,
    clientCertificate: null,
    phases: {
      requestedAt: at(0),
      pickedUpAt: null,
      machineStartedAt: null,
      registeredAt: null,
      readyAt: null,
      answeredAt: null,
      ...phases,
    },
    ...extra,
  };
}

function build(builders: Builder[], extra: Partial<Build> = {}): Build {
  return {
    id: 'bld_aaaaaaaa',
    projectId: 'prj_aaaaaaaa',
    status: 'succeeded',
    description: null,
    createdBy: 'tok_aaaaaaaa',
    createdAt: at(0),
    deadline: at(3_600_000),
    finishedAt: null,
    error: null,
    buildMs: null,
    builders,
    ...extra,
  };
}

test('a cold build shows every phase in order with its duration', (t) => {
  const b = builder({
    pickedUpAt: at(50),
    machineStartedAt: at(4_050),
    registeredAt: at(5_000),
    readyAt: at(6_000),
    answeredAt: at(6_020),
  });
  const segs = builderSegments(build([b], { buildMs: 9_000 }), b, t0 + 60_000);
  t.deepEqual(
    segs.map((s) => [s.phase, s.durationMs]),
    [
      ['queued', 50],
      ['provisioning', 4_000],
      ['booting', 950],
      ['starting', 1_000],
      ['handoff', 20],
      ['build', 9_000],
    ],
  );
  t.true(segs.every((s) => !s.open));
});

test('a hot build skips the machine phases and still adds up to its total time', (t) => {
  const b = builder({ readyAt: at(0), answeredAt: at(12) }, { path: 'hot' });
  const segs = builderSegments(build([b], { finishedAt: at(3_012) }), b, t0 + 60_000);
  t.deepEqual(
    segs.map((s) => [s.phase, s.durationMs]),
    [
      ['starting', 0],
      ['handoff', 12],
      ['build', 3_000],
    ],
  );
});

test('a waiting builder shows the phase it is in as still open', (t) => {
  const b = builder({ pickedUpAt: at(100) }, { state: 'pending', path: null });
  const segs = builderSegments(build([b], { status: 'pending' }), b, t0 + 2_100);
  t.deepEqual(segs.at(-1), {
    phase: 'provisioning',
    covers: ['provisioning'],
    startMs: t0 + 100,
    durationMs: 2_000,
    open: true,
  });
});

test('a milestone the control plane did not record merges its phase into the next one', (t) => {
  // The machine registered before the agent reported the apply that started it.
  const b = builder({
    pickedUpAt: at(100),
    registeredAt: at(12_100),
    readyAt: at(13_000),
    answeredAt: at(13_010),
  });
  const segs = builderSegments(build([b], { buildMs: 2_000 }), b, t0 + 60_000);
  t.deepEqual(
    segs.map((s) => [s.phase, s.durationMs]),
    [
      ['queued', 100],
      ['booting', 12_000],
      ['starting', 900],
      ['handoff', 10],
      ['build', 2_000],
    ],
  );
  t.is(segmentLabel(segs[1]!), 'creating or starting the machine + machine registering');
  t.is(segmentLabel(segs[0]!), 'waiting for the agent');
});

test('acquire points carry the path and time from request to answer, oldest first', (t) => {
  const cold = build([builder({ readyAt: at(5_000), answeredAt: at(5_010) })]);
  const hot = build(
    [builder({ requestedAt: at(-60_000), answeredAt: at(-59_990) }, { path: 'hot' })],
    {
      id: 'bld_bbbbbbbb',
    },
  );
  const pending = build([builder({}, { state: 'pending', path: null })], { id: 'bld_cccccccc' });
  const points = acquirePoints([cold, hot, pending]);
  t.deepEqual(
    points.map((p) => [p.buildId, p.path, p.ms]),
    [
      ['bld_bbbbbbbb', 'hot', 10],
      ['bld_aaaaaaaa', 'cold', 5_010],
    ],
  );
});

test('build counts fall into buckets that cover the whole span, split by outcome', (t) => {
  const builds = [
    build([], { createdAt: at(0), status: 'succeeded' }),
    build([], { createdAt: at(30_000), status: 'failed' }),
    build([], { createdAt: at(2 * 3_600_000), status: 'running' }),
  ];
  const buckets = buildCounts(builds, t0 + 2 * 3_600_000 + 1000);
  t.is(buckets[0]!.size, 15 * 60_000);
  t.true(buckets.length <= 24);
  t.is(
    buckets.reduce((s, b) => s + b.succeeded + b.failed + b.other, 0),
    3,
  );
  t.like(buckets[0], { succeeded: 1, failed: 1, other: 0 });
  t.like(buckets.at(-1), { succeeded: 0, failed: 0, other: 1 });
  t.deepEqual(buildCounts([], t0), []);
});

function connection(agent: Partial<NonNullable<Connection['agent']>> | null): Connection {
  return {
    id: 'con_aaaaaaaa',
    name: 'local',
    provider: 'local',
    settings: {} as Connection['settings'],
    aws: null,
    generation: 3,
    createdAt: at(0),
    agent: agent && {
      agentId: 'agent-1',
      version: '0.1.0',
      lastSeenAt: at(0),
      leaseExpiresAt: at(60_000),
      appliedGeneration: 3,
      lastApplyResult: 'succeeded',
      lastError: null,
      ...agent,
    },
  };
}

test('connection health names what is wrong', (t) => {
  const now = t0 + 1000;
  t.is(connectionHealth(connection(null), now).health, 'no-agent');
  t.is(connectionHealth(connection({}), now).health, 'healthy');
  t.is(connectionHealth(connection({ appliedGeneration: 2 }), now).health, 'converging');
  t.deepEqual(
    connectionHealth(connection({ lastApplyResult: 'failed', lastError: 'quota exceeded' }), now),
    { health: 'failing', why: 'quota exceeded' },
  );
  t.is(connectionHealth(connection({}), t0 + 61_000).health, 'offline');
});

test('diff lines are classed by their Pulumi marker, colors stripped', (t) => {
  const diff = [
    'Previewing update (con_aaaaaaaa):',
    '  pulumi:pulumi:Stack: (same)',
    '    \u001b[32m+ slipway:local:Machine: (create)\u001b[0m',
    '    ~ slipway:local:Volume: (update)',
    '    - slipway:local:Machine: (delete)',
    '    +-slipway:local:Machine: (replace)',
    '',
  ].join('\r\n');
  t.deepEqual(
    diffLines(diff).map((l) => l.kind),
    ['plain', 'plain', 'create', 'update', 'delete', 'replace'],
  );
  t.is(diffLines(diff)[2]!.text, '    + slipway:local:Machine: (create)');
});

test('the change summary leaves out unchanged resources', (t) => {
  t.deepEqual(summaryChanges({ summary: { same: 4, create: 1, update: 2, delete: 0 } }), [
    ['update', 2],
    ['create', 1],
  ]);
});

test('durations read naturally', (t) => {
  t.is(formatDuration(12), '12 ms');
  t.is(formatDuration(4_200), '4.2 s');
  t.is(formatDuration(119_600), '2 min');
  t.is(formatDuration(3_600_000 + 5 * 60_000), '1 h 5 min');
  t.is(formatDuration(3 * 86_400_000), '3 d');
});
