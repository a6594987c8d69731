// How the machine-agent waits on the control plane: jittered backoff that never loops tightly
// nor grows without bound, retries of a control plane that is down or overloaded (a real HTTP
// server on loopback), a deadline that ends with the last reason, and no retry where retrying
// cannot help.
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiClient } from '../common/api';
import { ControlPlane } from '../machine/control-plane';
import { MachineAgentError } from '../machine/errors';
import { backoffDelay } from '../machine/retry';
import { captureLogger } from './helpers/logger';

test('backoff waits at least half its ceiling, never more than the cap, and spreads machines apart', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 200 }),
      fc.integer({ min: 1, max: 10_000 }),
      fc.integer({ min: 1, max: 600_000 }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (attempt, initialMs, extra, r) => {
        const policy = { initialMs, maxMs: initialMs + extra };
        const delay = backoffDelay(attempt, policy, () => r);
        const ceiling = Math.min(policy.maxMs, initialMs * 2 ** attempt);
        return delay >= Math.floor(ceiling / 2) && delay <= policy.maxMs;
      },
    ),
  );
  const policy = { initialMs: 500, maxMs: 30_000 };
  t.is(
    backoffDelay(0, policy, () => 0),
    250,
  );
  t.is(
    backoffDelay(20, policy, () => 0.999_999),
    30_000,
  );
  t.not(
    backoffDelay(3, policy, () => 0.1),
    backoffDelay(3, policy, () => 0.9),
  );
});

interface Scripted {
  status: number;
  body: unknown;
}

async function scriptedServer(t: ExecutionContext, answers: Scripted[]) {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    const next = answers.length > 1 ? answers.shift()! : answers[0]!;
    res.writeHead(next.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(next.body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const client = new ApiClient({
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    token: `swm_${'M'.repeat(43)}`,
  });
  t.teardown(() => client.close());
  const { logger, lines } = captureLogger();
  const cp = new ControlPlane({ client, logger, backoff: { initialMs: 20, maxMs: 100 } });
  return { seen, cp, lines };
}

const status = {
  taskGeneration: 1,
  buildkit: 'ready' as const,
  health: {
    buildkitdAlive: true,
    buildkitdRestarts: 0,
    cacheBytesUsed: 0,
    cacheBytesTotal: 0,
    inodesUsed: 0,
    inodesTotal: 0,
  },
};
const unavailable = {
  status: 503,
  body: { error: { code: 'internal', message: 'database is restarting' } },
};

test('a control plane answering 503 is retried with logged reasons until it answers', async (t) => {
  const { seen, cp, lines } = await scriptedServer(t, [
    unavailable,
    unavailable,
    { status: 200, body: {} },
  ]);
  await cp.call('machineStatus', { body: status }, { what: 'report status', deadlineMs: 10_000 });
  t.is(seen.length, 3);
  const warnings = lines().filter((l) => l.msg === 'could not report status; retrying');
  t.is(warnings.length, 2);
  t.regex(String(warnings[0]!.err), /database is restarting/);
  t.false(JSON.stringify(lines()).includes('swm_'), 'the machine token is never logged');
});

test('retrying ends at its deadline with the last reason', async (t) => {
  const { cp } = await scriptedServer(t, [unavailable]);
  const err = await t.throwsAsync(
    cp.call(
      'machineStatus',
      { body: status },
      { what: 'report status', deadlineMs: 300, code: 'control_plane_lost' },
    ),
    { instanceOf: MachineAgentError },
  );
  t.is(err?.code, 'control_plane_lost');
  t.regex(
    err!.message,
    /gave up trying to report status after \d+ s and \d+ attempts: database is restarting/,
  );
});

test('a rejected machine token is fatal at once, not retried', async (t) => {
  const { seen, cp } = await scriptedServer(t, [
    { status: 401, body: { error: { code: 'unauthorized', message: 'unknown token' } } },
  ]);
  const err = await t.throwsAsync(
    cp.call('machineStatus', { body: status }, { what: 'report status', deadlineMs: 10_000 }),
    { instanceOf: MachineAgentError },
  );
  t.is(err?.code, 'machine_token_rejected');
  t.true(err!.fatal);
  t.is(seen.length, 1);
});

test('an unreachable control plane is retried and reported as unreachable', async (t) => {
  const client = new ApiClient({ baseUrl: 'http://127.0.0.1:9' });
  t.teardown(() => client.close());
  const cp = new ControlPlane({
    client,
    logger: captureLogger().logger,
    backoff: { initialMs: 20, maxMs: 50 },
  });
  const err = await t.throwsAsync(
    cp.call('machineStatus', { body: status }, { what: 'report status', deadlineMs: 200 }),
    { instanceOf: MachineAgentError },
  );
  t.is(err?.code, 'control_plane_unreachable');
  t.regex(err!.message, /cannot reach the control plane at http:\/\/127\.0\.0\.1:9/);
});
