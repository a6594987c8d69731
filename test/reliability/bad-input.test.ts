// Bad input on every endpoint of the real control plane (its own process, SQLite file): fuzzed
// bodies, query strings, headers, tokens and path ids; malformed and overreaching CSRs; oversized
// payloads and malformed HTTP; slow and vanishing clients. Each ends with a 4xx and a stable error
// code from the protocol, the database is unchanged, the server keeps answering, nothing reaches
// its stderr, and no token or private key is repeated in an answer or a log line.
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { request } from 'undici';
import { buildPath, routes, type RouteName } from '../../common/api';
import * as pki from '../../common/pki';
import { errorBodySchema, errorCodes } from '../../common/protocol';
import { registeredMachine, requestBuild } from '../helpers/control-plane';
import {
  databaseSnapshot,
  integrityCheck,
  startControlPlaneProcess,
  type ControlPlaneProcess,
} from '../helpers/cp-process';
import { brokenCsrs, overreachingClientCsrs, overreachingServerCsrs } from '../helpers/csr-zoo';
import { ledger, type Ledger } from '../helpers/ledger';
import { rawRequest } from '../helpers/raw-http';

const routeNames = Object.keys(routes) as RouteName[];

/** A world with every kind of token and resource: a ready builder, a pending unregistered one. */
async function world(t: ExecutionContext) {
  const cp = await startControlPlaneProcess(t);
  const w = await registeredMachine(cp, cp.user);
  const task = await w.machine.task();
  if (task.kind !== 'buildkit') throw new Error(`expected a buildkit task, got ${task.kind}`);
  await w.machine.report('ready');
  const ready = await cp.user.call('waitBuilder', {
    params: { buildId: w.build.id },
    query: { platform: 'linux/amd64', wait: 10 },
  });
  if (ready.state !== 'ready') throw new Error(`builder not ready: ${ready.reason}`);
  // A second project's machine that has not registered: its registration token still works.
  await cp.user.call('createProject', { body: { name: 'second', connection: w.connection.id } });
  const second = await requestBuild(cp.user, 'second');
  await w.agent.sync();
  const unregistered = w.agent.fleet!.machines.find((m) => m.id === second.builders[0]!.machineId)!;
  const secrets = {
    userToken: cp.userToken,
    connectionToken: w.connectionToken,
    machineToken: w.machine.token!,
    registrationToken: unregistered.registrationToken!,
    serverKey: await w.machine.serverKeyPem(),
  };
  /** Signs of life, so that no timed planner pass changes anything during a batch. */
  const keepAlive = async () => {
    await w.agent.sync();
    await w.machine.task();
    await w.machine.report('ready');
    await cp.user.call('heartbeatBuild', { params: { buildId: w.build.id }, body: {} });
    await cp.user.call('heartbeatBuild', { params: { buildId: second.id }, body: {} });
  };
  await keepAlive();
  return { cp, w, second, unregistered, secrets, keepAlive };
}

type World = Awaited<ReturnType<typeof world>>;

interface Answer {
  status: number;
  text: string;
}

async function send(
  cp: ControlPlaneProcess,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer> {
  const res = await request(cp.url + path, {
    method: method as 'GET',
    headers,
    body,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  return { status: res.statusCode, text: await res.body.text() };
}

/** Counts answers by status and code; every one must be a 4xx with a protocol error body. */
class Verdicts {
  readonly answers: Answer[] = [];
  readonly counts = new Map<string, number>();

  /** True when the answer is a 4xx whose body is the protocol's error with a known code. */
  refused(a: Answer): boolean {
    this.answers.push(a);
    if (a.status < 400 || a.status >= 500) return false;
    let json: unknown;
    try {
      json = JSON.parse(a.text);
    } catch {
      return false;
    }
    const parsed = errorBodySchema.safeParse(json);
    if (!parsed.success || !errorCodes.includes(parsed.data.error.code)) return false;
    const key = `${a.status} ${parsed.data.error.code}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    return true;
  }

  /** A read that may be valid: any answer but a 5xx, and a 4xx must be well formed. */
  answered(a: Answer): boolean {
    if (a.status >= 200 && a.status < 300) {
      this.answers.push(a);
      return true;
    }
    return this.refused(a);
  }

  summary(): string {
    return [...this.counts.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ×${n}`)
      .join(', ');
  }
}

/** Runs a batch of requests and checks that it changed nothing and the server still answers. */
async function batch(
  t: ExecutionContext,
  ctx: World,
  what: string,
  run: () => Promise<void>,
): Promise<void> {
  await ctx.keepAlive();
  const before = await databaseSnapshot(ctx.cp.dataDir);
  await run();
  t.is(await databaseSnapshot(ctx.cp.dataDir), before, `${what}: nothing was written`);
  t.is((await fetch(`${ctx.cp.url}/healthz`)).status, 200, `${what}: the server is healthy`);
}

/** Nothing secret in any answer, in the server's log, or on its stderr (which must be empty). */
function assertNoSecrets(t: ExecutionContext, ctx: World, answers: Answer[], book: Ledger) {
  const keyBody = ctx.secrets.serverKey.split('\n').slice(1, -2).join('');
  const secrets = [
    ctx.secrets.userToken,
    ctx.secrets.connectionToken,
    ctx.secrets.machineToken,
    ctx.secrets.registrationToken,
    keyBody.slice(0, 40),
  ];
  const texts = [...answers.map((a) => a.text), ctx.cp.log()];
  const leaks = secrets.filter((s) => texts.some((x) => x.includes(s)));
  t.deepEqual(leaks, [], 'no token or private key is repeated in an answer or a log line');
  t.is(ctx.cp.stderr(), '', 'nothing on the server stderr');
  book.record(
    'secret',
    `${answers.length} answers to bad requests (tokens and keys planted in fields, ids, queries and headers) and the server log`,
    leaks.length === 0
      ? 'no token or private key repeated; stderr empty'
      : `LEAKED ${leaks.length}`,
  );
}

/** A valid body per route, each made invalid below by an extra field the strict schemas refuse. */
function exampleBodies(ctx: World): Partial<Record<RouteName, Record<string, unknown>>> {
  const { w, unregistered } = ctx;
  return {
    createToken: { name: 'fuzz' },
    createConnection: { name: 'fuzz', provider: 'local' },
    updateConnection: { settings: { maxMachines: 5 } },
    createProject: { name: 'fuzz', connection: w.connection.id },
    createBuild: { project: w.project.id, platforms: [{ platform: 'linux/amd64', csr: 'x' }] },
    heartbeatBuild: {},
    finishBuild: { result: 'succeeded' },
    agentSync: {
      agentId: w.agent.agentId,
      agentVersion: 'fuzz',
      knownGeneration: 0,
      observation: { observedAt: new Date().toISOString(), machines: [], volumes: [] },
    },
    machineRegister: {
      machineId: unregistered.id,
      registrationToken: unregistered.registrationToken,
      platform: 'linux/amd64',
      endpoint: { host: '127.0.0.1', port: 8372 },
      csr: 'x',
      agentVersion: 'fuzz',
    },
    machineStatus: {
      taskGeneration: 0,
      buildkit: 'ready',
      health: {
        buildkitdAlive: true,
        buildkitdRestarts: 0,
        cacheBytesUsed: 0,
        cacheBytesTotal: 0,
        inodesUsed: 0,
        inodesTotal: 0,
      },
    },
    machineShutdown: { reason: 'fuzz' },
  };
}

function target(ctx: World, name: RouteName) {
  const def = routes[name];
  const { w, secrets } = ctx;
  const params: Record<string, string> = {
    // A token id that does not exist: deleting a real one would be a valid request.
    tokenId: 'tok_doesnotexist00',
    connectionId: w.connection.id,
    projectId: w.project.id,
    buildId: w.build.id,
  };
  const token = {
    none: undefined,
    user: secrets.userToken,
    connection: secrets.connectionToken,
    machine: secrets.machineToken,
  }[def.auth];
  return { def, path: buildPath(def.path, params), token };
}

const secretLike = (ctx: World) =>
  fc.constantFrom(
    ctx.secrets.userToken,
    ctx.secrets.connectionToken,
    ctx.secrets.machineToken,
    ctx.secrets.registrationToken,
    ctx.secrets.serverKey,
  );

test('every endpoint answers fuzzed bodies, queries, headers, tokens and ids with a 4xx and a stable code, and writes nothing', async (t) => {
  const book = ledger(t);
  const ctx = await world(t);
  const { cp } = ctx;
  const examples = exampleBodies(ctx);
  const verdicts = new Verdicts();
  const json = (token: string | undefined) => ({
    'content-type': 'application/json',
    ...(token ? { authorization: `Bearer ${token}` } : {}),
  });
  // Any JSON at all, with tokens and keys planted in it now and then.
  const anyJson = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.dictionary(
      fc.oneof(fc.string(), secretLike(ctx)),
      fc.oneof(fc.jsonValue(), secretLike(ctx)),
    ),
  );

  // Bodies: a valid body with an unknown field added and other fields replaced, any JSON at all,
  // and text that is not JSON.
  const bodyRoutes = routeNames.filter((n) => 'body' in routes[n]);
  let bodies = 0;
  await batch(t, ctx, 'fuzzed bodies', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...bodyRoutes),
        fc.oneof(
          fc.record({
            kind: fc.constant('mutated' as const),
            extraKey: fc.oneof(fc.string({ minLength: 1 }), secretLike(ctx)),
            extraValue: anyJson,
            replace: fc.dictionary(fc.string({ maxLength: 12 }), anyJson, { maxKeys: 2 }),
          }),
          fc.record({ kind: fc.constant('json' as const), value: anyJson }),
          fc.record({ kind: fc.constant('text' as const), value: fc.string({ minLength: 1 }) }),
        ),
        async (name, shape) => {
          const tg = target(ctx, name);
          let body: string;
          let mustRefuse = true;
          if (shape.kind === 'mutated') {
            const value = { ...examples[name], ...shape.replace };
            // The extra key must be unknown to the schema, whatever else changed.
            const key = shape.extraKey in value ? `${shape.extraKey}_x` : shape.extraKey;
            body = JSON.stringify({ ...value, [key]: shape.extraValue });
          } else if (shape.kind === 'json') {
            body = JSON.stringify(shape.value);
            // `{}` is a valid heartbeat, which only records a sign of life.
            mustRefuse = !(name === 'heartbeatBuild' && body === '{}');
          } else {
            body = shape.value;
            mustRefuse = !/^\s*\{\s*\}\s*$/.test(body) || name !== 'heartbeatBuild';
          }
          bodies++;
          const a = await send(cp, tg.def.method, tg.path, json(tg.token), body);
          return mustRefuse ? verdicts.refused(a) : verdicts.answered(a);
        },
      ),
      { numRuns: 400 },
    );
  });
  book.record(
    'bad input',
    `${bodies} fuzzed JSON bodies on the ${bodyRoutes.length} routes that take one (mutated valid bodies, any JSON, non-JSON text)`,
    `all 4xx with a protocol code, nothing written, healthy`,
  );

  // Query strings: arbitrary keys and values on every route, repeated and encoded oddly.
  const queryable = routeNames;
  let queries = 0;
  await batch(t, ctx, 'fuzzed query strings', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...queryable),
        fc.array(
          fc.tuple(
            fc.oneof(
              fc.constantFrom(
                'wait',
                'platform',
                'limit',
                'before',
                'generation',
                'kind',
                'project',
                'connection',
                'includeDeleted',
                '__proto__',
                'constructor',
              ),
              fc.string({ minLength: 1, maxLength: 10 }),
              secretLike(ctx),
            ),
            fc.oneof(
              fc.string({ maxLength: 20 }),
              fc.integer().map(String),
              fc.constantFrom('-1', '1e9', 'NaN', '%zz', 'linux/amd64', 'true', ''),
              secretLike(ctx),
            ),
          ),
          { minLength: 1, maxLength: 4 },
        ),
        async (name, params) => {
          const tg = target(ctx, name);
          const query = new URLSearchParams(params);
          // A valid long-poll would hold for its whole wait: only quick answers here.
          query.append('wait', '0');
          const body = 'body' in tg.def ? '' : undefined;
          queries++;
          const a = await send(cp, tg.def.method, `${tg.path}?${query}`, json(tg.token), body);
          // Reads may be valid; anything that would write has a body (empty here) or, for
          // rotating a token, a query it refuses (`wait` is not one of its parameters).
          return tg.def.method === 'GET' ? verdicts.answered(a) : verdicts.refused(a);
        },
      ),
      { numRuns: 400 },
    );
  });
  book.record(
    'bad input',
    `${queries} fuzzed query strings on all ${queryable.length} routes (unknown, repeated, oddly encoded, planted tokens)`,
    'reads answered or 4xx, writes refused with a protocol code; nothing written',
  );

  // Tokens and headers: every route with every wrong kind of credential and odd headers.
  const kinds = ['swu_', 'swc_', 'swm_', 'swr_'];
  const credential = fc.oneof(
    fc.constant(undefined),
    fc.string({ maxLength: 60 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'x')),
    fc
      .constantFrom(...kinds)
      .chain((k) => fc.stringMatching(/^[A-Za-z0-9_-]{43}$/).map((s) => `Bearer ${k}${s}`)),
    fc.constantFrom(
      `Basic ${Buffer.from('admin:admin').toString('base64')}`,
      'Bearer',
      'Bearer ',
      `bearer  ${ctx.secrets.userToken}`,
      `Bearer ${ctx.secrets.userToken} extra`,
      `Bearer ${ctx.secrets.userToken.slice(0, -1)}`,
      `Bearer ${ctx.secrets.registrationToken}`,
      `Bearer ${'a'.repeat(4000)}`,
    ),
    fc
      .constantFrom(ctx.secrets.userToken, ctx.secrets.connectionToken, ctx.secrets.machineToken)
      .map((tok) => `Bearer ${tok}`),
  );
  let headerRuns = 0;
  await batch(t, ctx, 'fuzzed tokens and headers', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routeNames),
        credential,
        fc.constantFrom(
          'application/json',
          'text/plain',
          'application/json; charset=latin1',
          'application/x-www-form-urlencoded',
          'multipart/form-data; boundary=x',
          '',
        ),
        fc.string({ maxLength: 80 }).map((s) => s.replace(/[^\x21-\x7e]/g, '')),
        async (name, authorization, contentType, requestId) => {
          const tg = target(ctx, name);
          const headers: Record<string, string> = {};
          if (authorization !== undefined) headers.authorization = authorization;
          if (contentType) headers['content-type'] = contentType;
          if (requestId) headers['x-request-id'] = requestId;
          const rightToken = tg.token !== undefined && authorization === `Bearer ${tg.token}`;
          // With the right token, only a refused body or query keeps it from writing.
          const path = rightToken ? `${tg.path}?fuzz=1` : tg.path;
          const body = 'body' in tg.def ? '{"fuzz":1}' : undefined;
          headerRuns++;
          const a = await send(cp, tg.def.method, path, headers, body);
          if (tg.def.auth !== 'none' && !rightToken && !(a.status === 401 || a.status === 403)) {
            return false;
          }
          return verdicts.refused(a);
        },
      ),
      { numRuns: 400 },
    );
  });
  book.record(
    'bad input',
    `${headerRuns} requests with wrong, malformed, truncated or other kinds of tokens and odd content types and request ids`,
    '401 unauthorized / 403 forbidden before anything else; nothing written',
  );

  // Path ids: other kinds, encoded separators, unicode, very long.
  const pathRoutes = routeNames.filter((n) => routes[n].path.includes(':'));
  let ids = 0;
  await batch(t, ctx, 'fuzzed path ids', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...pathRoutes),
        fc.oneof(
          fc.string({ maxLength: 60 }),
          fc.constantFrom(
            '..',
            '../..',
            '%2e%2e%2f',
            'bld_',
            `prj_${'a'.repeat(200)}`,
            ctx.w.machine.machineId,
            ctx.w.connection.id,
            ctx.w.project.id,
            ctx.w.build.id,
          ),
          secretLike(ctx),
        ),
        async (name, id) => {
          const tg = target(ctx, name);
          const path = tg.def.path.replace(/:[A-Za-z]+/g, encodeURIComponent(id));
          const body = 'body' in tg.def ? '{"fuzz":1}' : undefined;
          ids++;
          const a = await send(cp, tg.def.method, `${path}?fuzz=1`, json(tg.token), body);
          return verdicts.refused(a);
        },
      ),
      { numRuns: 300 },
    );
  });
  book.record(
    'bad input',
    `${ids} fuzzed path ids on the ${pathRoutes.length} routes with ids (other kinds, traversal, unicode, 200 characters, tokens)`,
    '4xx (404 not_found for ids that cannot exist); nothing written',
  );
  t.log(verdicts.summary());
  assertNoSecrets(t, ctx, verdicts.answers, book);
  t.is(await integrityCheck(cp.dataDir), 'ok');
});

test('malformed and overreaching CSRs are refused for builds and machines, and nothing is written', async (t) => {
  const book = ledger(t);
  const ctx = await world(t);
  const { cp, w, unregistered } = ctx;
  const verdicts = new Verdicts();
  const broken = await brokenCsrs();
  const outcomes: string[] = [];
  await batch(t, ctx, 'bad CSRs', async () => {
    for (const bad of [...broken, ...(await overreachingClientCsrs())]) {
      const a = await send(
        cp,
        'POST',
        '/v1/builds',
        { 'content-type': 'application/json', authorization: `Bearer ${cp.userToken}` },
        JSON.stringify({
          project: w.project.id,
          platforms: [{ platform: 'linux/amd64', csr: bad.csr }],
        }),
      );
      t.true(verdicts.refused(a), `build CSR with ${bad.what}: ${a.status} ${a.text}`);
      const code = JSON.parse(a.text).error?.code;
      t.is(code, bad.code, `build CSR with ${bad.what}`);
      outcomes.push(`build ${bad.what}: ${a.status} ${code}`);
    }
    const serverCsrs = [
      ...broken,
      ...(await overreachingServerCsrs(unregistered.id, w.machine.machineId)),
    ];
    for (const bad of serverCsrs) {
      const a = await send(
        cp,
        'POST',
        '/v1/machine/register',
        { 'content-type': 'application/json' },
        JSON.stringify({
          machineId: unregistered.id,
          registrationToken: unregistered.registrationToken,
          platform: 'linux/amd64',
          endpoint: { host: '127.0.0.1', port: 8372 },
          csr: bad.csr,
          agentVersion: 'fuzz',
        }),
      );
      t.true(verdicts.refused(a), `machine CSR with ${bad.what}: ${a.status} ${a.text}`);
      t.is(JSON.parse(a.text).error?.code, bad.code, `machine CSR with ${bad.what}`);
    }
    for (const bad of [...broken, ...(await overreachingClientCsrs())]) {
      book.record('bad input', `build CSR: ${bad.what}`, `400 ${bad.code}, no build written`);
    }
    for (const bad of serverCsrs) {
      book.record(
        'bad input',
        `machine registration CSR: ${bad.what}`,
        `400 ${bad.code}; the machine stays unregistered`,
      );
    }
  });
  // The machine's registration token still works once, with a CSR of its own.
  const keys = await pki.generateKeyPair();
  const own = await cp.anonymous.call('machineRegister', {
    body: {
      machineId: unregistered.id,
      registrationToken: unregistered.registrationToken!,
      platform: 'linux/amd64',
      endpoint: { host: '127.0.0.1', port: 8372 },
      csr: await pki.createCsr(keys, { commonName: unregistered.id, ipAddresses: ['127.0.0.1'] }),
      agentVersion: 'test',
    },
  });
  t.regex(own.machineToken, /^swm_/);
  assertNoSecrets(t, ctx, verdicts.answers, book);
});

test('oversized payloads and malformed HTTP get a 4xx with a stable code before anything is read in full', async (t) => {
  const book = ledger(t);
  const ctx = await world(t);
  const { cp } = ctx;
  const auth = `authorization: Bearer ${cp.userToken}\r\n`;
  const agentAuth = `authorization: Bearer ${ctx.secrets.connectionToken}\r\n`;
  const mb = 1024 * 1024;
  const deep = `{"name":${'['.repeat(400_000)}${']'.repeat(400_000)}}`;
  const proto = `{"__proto__":{"admin":true},"name":"x","connection":"local"}`;
  const manyKeys = `{${Array.from({ length: 50_000 }, (_, i) => `"k${i}":1`).join(',')}}`;
  const cases: {
    what: string;
    head: string | Buffer;
    status: number;
    code: string;
    body?: string;
  }[] = [
    {
      what: 'a body over 1 MB with its content-length',
      head: `POST /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-length: ${mb + 1}\r\n\r\n`,
      body: 'x'.repeat(mb + 1),
      status: 413,
      code: 'payload_too_large',
    },
    {
      what: 'a 2 MB chunked body without a length',
      head: `POST /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n`,
      body: `${(2 * mb).toString(16)}\r\n${'x'.repeat(2 * mb)}\r\n0\r\n\r\n`,
      status: 413,
      code: 'payload_too_large',
    },
    {
      what: 'an agent sync over 4 MB',
      head: `POST /v1/agent/sync HTTP/1.1\r\nhost: x\r\n${agentAuth}content-type: application/json\r\ncontent-length: ${4 * mb + 1}\r\n\r\n`,
      body: 'x'.repeat(4 * mb + 1),
      status: 413,
      code: 'payload_too_large',
    },
    {
      what: 'JSON nested 400,000 deep',
      head: `POST /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-length: ${deep.length}\r\n\r\n`,
      body: deep,
      status: 400,
      code: 'invalid_body',
    },
    {
      what: 'a JSON object with 50,000 keys',
      head: `POST /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-length: ${manyKeys.length}\r\n\r\n`,
      body: manyKeys,
      status: 400,
      code: 'invalid_body',
    },
    {
      what: 'a __proto__ key',
      head: `POST /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-length: ${proto.length}\r\n\r\n`,
      body: proto,
      status: 400,
      code: 'invalid_body',
    },
    {
      what: 'a gzip content-encoding with garbage',
      head: `POST /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: 8\r\n\r\n`,
      body: 'notgzip!',
      status: 415,
      code: 'unsupported_media_type',
    },
    {
      what: 'a UTF-16 charset',
      head: `POST /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json; charset=utf-16\r\ncontent-length: 2\r\n\r\n`,
      body: '{}',
      status: 415,
      code: 'unsupported_media_type',
    },
    {
      what: 'headers over 16 KB',
      head: `GET /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}x-padding: ${'a'.repeat(20_000)}\r\n\r\n`,
      status: 431,
      code: 'invalid_header',
    },
    {
      what: 'a URL over 16 KB',
      head: `GET /v1/projects?q=${'a'.repeat(20_000)} HTTP/1.1\r\nhost: x\r\n${auth}\r\n`,
      status: 431,
      code: 'invalid_header',
    },
    {
      what: 'a request line that is not HTTP',
      head: 'HELLO THERE\r\n\r\n',
      status: 400,
      code: 'invalid_request',
    },
    {
      what: 'two different content-lengths',
      head: `POST /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}`,
      status: 400,
      code: 'invalid_request',
    },
    {
      what: 'content-length and chunked together (smuggling)',
      head: `POST /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`,
      status: 400,
      code: 'invalid_request',
    },
    {
      what: 'a chunk size that is not hex',
      head: `POST /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
      status: 400,
      code: 'invalid_request',
    },
    {
      what: 'a negative content-length',
      head: `POST /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-length: -5\r\n\r\n`,
      status: 400,
      code: 'invalid_request',
    },
    {
      what: 'a control character in a header',
      head: `GET /v1/projects HTTP/1.1\r\nhost: x\r\n${auth}x-bad: a\u0001b\r\n\r\n`,
      status: 400,
      code: 'invalid_request',
    },
  ];
  const verdicts = new Verdicts();
  await batch(t, ctx, 'oversized and malformed HTTP', async () => {
    for (const c of cases) {
      const a = await rawRequest(cp.url, c.head, {
        chunks: c.body ? [{ data: c.body, delayMs: 0 }] : [],
        timeoutMs: 60_000,
      });
      const ok = verdicts.refused({ status: a.status, text: a.body });
      t.true(ok, `${c.what}: ${a.status} ${a.body.slice(0, 200)}`);
      t.is(a.status, c.status, c.what);
      const code = (JSON.parse(a.body || '{}') as { error?: { code?: string } }).error?.code;
      t.is(code, c.code, c.what);
      book.record('bad input', c.what, `${a.status} ${code ?? '(no body)'}, nothing written`);
    }
  });
  assertNoSecrets(t, ctx, verdicts.answers, book);
});

test('slow and vanishing clients are cut in bounded time while everyone else is served', async (t) => {
  const book = ledger(t);
  const ctx = await world(t);
  const { cp, w, secrets } = ctx;
  const before = await databaseSnapshot(cp.dataDir);
  // Stalled clients: headers that never end, bodies that trickle and stop.
  const slowHeaders = Array.from({ length: 20 }, () =>
    rawRequest(cp.url, `GET /v1/projects HTTP/1.1\r\nhost: x\r\n`, {
      chunks: Array.from({ length: 120 }, (_, i) => ({
        data: `x-slow-${i}: 1\r\n`,
        delayMs: 1000,
      })),
      timeoutMs: 150_000,
    }),
  );
  const slowBodies = Array.from({ length: 10 }, () =>
    rawRequest(
      cp.url,
      `POST /v1/projects HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${secrets.userToken}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{`,
      {
        chunks: Array.from({ length: 120 }, () => ({ data: ' ', delayMs: 1000 })),
        timeoutMs: 150_000,
      },
    ),
  );
  // Vanishing clients: long-polls whose connection is reset or closed halfway.
  const vanish = async (head: string, reset: boolean) => {
    const { hostname, port } = new URL(cp.url);
    const net = await import('node:net');
    await new Promise<void>((resolve) => {
      const s = net.connect(Number(port), hostname, () => {
        s.write(head);
        setTimeout(() => {
          if (reset) s.resetAndDestroy();
          else s.end();
          resolve();
        }, 1000);
      });
      s.on('error', () => undefined);
    });
  };
  const sync = JSON.stringify({
    agentId: w.agent.agentId,
    agentVersion: 'test',
    knownGeneration: 1_000_000,
    observation: w.agent.observation,
  });
  const longPolls = [
    `POST /v1/agent/sync?wait=25 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${secrets.connectionToken}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(sync)}\r\n\r\n${sync}`,
    `GET /v1/builds/${ctx.second.id}/builder?platform=linux/amd64&wait=25 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${secrets.userToken}\r\n\r\n`,
    `GET /v1/machine/task?generation=1000000&wait=25 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${secrets.machineToken}\r\n\r\n`,
    `POST /v1/projects HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${secrets.userToken}\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{"name":`,
  ];
  const vanishing = Promise.all(
    Array.from({ length: 12 }, (_, i) => vanish(longPolls[i % longPolls.length]!, i % 2 === 0)),
  );
  // Meanwhile everyone else is served: a probe every half second until the stalled ones are cut.
  const probes: number[] = [];
  let probing = true;
  const prober = (async () => {
    while (probing) {
      const started = performance.now();
      await ctx.keepAlive();
      const org = await cp.user.call('getOrganization', {});
      t.is(org.id, cp.organizationId);
      probes.push(performance.now() - started);
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  await vanishing;
  const stalled = await Promise.all([...slowHeaders, ...slowBodies]);
  probing = false;
  await prober;
  for (const a of stalled) {
    t.is(a.status, 408, a.body);
    t.is(JSON.parse(a.body).error.code, 'request_timeout');
    // Cut after the minute a request may take, within the 5 s check interval (and some slack).
    t.true(a.ms >= 59_000 && a.ms < 80_000, `cut after ${Math.round(a.ms)} ms`);
  }
  const slowest = Math.max(...probes);
  t.true(slowest < 10_000, `every probe answered; the slowest took ${Math.round(slowest)} ms`);
  book.record(
    'bad input',
    '20 clients sending headers one line a second, 10 trickling their body, for two minutes',
    `408 request_timeout after ${Math.round(Math.min(...stalled.map((a) => a.ms)) / 1000)}-${Math.round(Math.max(...stalled.map((a) => a.ms)) / 1000)} s; ${probes.length} probes meanwhile all answered (slowest ${Math.round(slowest)} ms)`,
  );
  book.record(
    'bad input',
    '12 clients that reset or close their connection during a long-poll (sync, builder, task) or mid-body',
    'logged at debug level; no stack trace on stderr; the server keeps answering',
  );
  await ctx.keepAlive();
  t.is(await databaseSnapshot(cp.dataDir), before, 'nothing was written');
  t.regex(cp.log(), /the client went away before the answer/);
  t.is(cp.stderr(), '', 'nothing on the server stderr');
  t.is(await integrityCheck(cp.dataDir), 'ok');
});
