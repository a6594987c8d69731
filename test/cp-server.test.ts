// The service around the API: HTTPS, the dev bootstrap that is safe to rerun, the server secret
// that must stay private, the `slipway server` flags, health and metrics, and an AWS connection
// whose machines must prove who they are.
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import pino from 'pino';
import { ApiClient, ApiError } from '../common/api';
import * as pki from '../common/pki';
import { devTokenFile, ensureDevOrganization } from '../control-plane/bootstrap';
import { main } from '../control-plane/main';
import { serverSecretFile } from '../control-plane/secrets';
import { startControlPlane } from '../control-plane/server';
import {
  requestBuild,
  ScriptedAgent,
  ScriptedMachine,
  startTestControlPlane,
} from './helpers/control-plane';
import { tempDir } from './helpers/tmp';

test('serves HTTPS with the given certificate', async (t) => {
  const dir = await tempDir(t, 'cp-tls');
  const now = Date.now();
  const ca = await pki.createCa('test CA', new Date(now - 60_000), new Date(now + 3600_000));
  const keys = await pki.generateKeyPair();
  const cert = await pki.issueCertificate({
    ca: { certPem: ca.certPem, privateKey: ca.keys.privateKey },
    publicKey: keys.publicKey,
    commonName: 'localhost',
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3600_000),
  });
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  await writeFile(certFile, cert);
  await writeFile(keyFile, await pki.privateKeyToPem(keys.privateKey), { mode: 0o600 });
  const tcp = await startTestControlPlane(t, {
    tls: { certFile, keyFile },
    publicUrl: 'https://cp.example.com/',
  });
  t.regex(tcp.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  t.is(tcp.cp.publicUrl, 'https://cp.example.com');
  const client = new ApiClient({ baseUrl: tcp.url, token: tcp.userToken, ca: ca.certPem });
  t.teardown(() => client.close());
  t.is((await client.call('getOrganization', {})).id, tcp.organizationId);
  const untrusting = await t.throwsAsync(tcp.user.call('getOrganization', {}), {
    instanceOf: ApiError,
  });
  t.is(untrusting?.code, 'unreachable');
});

test('the dev bootstrap is idempotent and keeps its token private', async (t) => {
  const tcp = await startTestControlPlane(t);
  const opts = { db: tcp.cp.db, dataDir: tcp.dataDir, name: 'dev' };
  const first = await ensureDevOrganization(opts);
  t.true(first.created);
  const file = devTokenFile(tcp.dataDir, 'dev');
  t.is((await stat(file)).mode & 0o777, 0o600);
  const again = await ensureDevOrganization(opts);
  t.false(again.created);
  t.is(again.token, first.token);
  t.is(again.organization.id, first.organization.id);
  const dev = tcp.client(first.token);
  t.is((await dev.call('getOrganization', {})).name, 'dev');

  // Revoked: a new token replaces it in the file.
  const { tokens } = await dev.call('listTokens', {});
  await dev.call('deleteToken', { params: { tokenId: tokens[0]!.id } });
  const renewed = await ensureDevOrganization(opts);
  t.not(renewed.token, first.token);
  t.is((await readFile(file, 'utf8')).trim(), renewed.token);
  t.is((await tcp.client(renewed.token).call('getOrganization', {})).id, first.organization.id);
});

test('the server secret is made private and a readable one is refused', async (t) => {
  const dataDir = await tempDir(t, 'cp-secret');
  const cp = await startControlPlane({ dataDir, logger: pino({ level: 'silent' }) });
  await cp.close();
  const file = path.join(dataDir, serverSecretFile);
  t.is((await stat(file)).mode & 0o777, 0o600);
  await chmod(file, 0o644);
  const err = await t.throwsAsync(
    startControlPlane({ dataDir, logger: pino({ level: 'silent' }) }),
  );
  t.regex(err!.message, /chmod 600/);
});

test('slipway server refuses bad flags with a message', async (t) => {
  await t.throwsAsync(main(['--listen', 'nowhere']), { message: /host:port/ });
  await t.throwsAsync(main(['--public-url', 'ftp://x']), { message: /http/ });
  await t.throwsAsync(main(['--bootstrap-org', 'Not A Name']), { message: /lowercase/ });
  await t.throwsAsync(main(['--database-url', 'mysql://db']), { message: /postgres:\/\// });
  await t.throwsAsync(main(['--tls-cert', 'a.pem']), {
    message: /--tls-cert and --tls-key go together/,
  });
});

test('health and metrics answer without a token', async (t) => {
  const tcp = await startTestControlPlane(t);
  const health = await fetch(`${tcp.url}/healthz`);
  t.is(health.status, 200);
  t.deepEqual(await health.json(), { status: 'ok' });
  await tcp.user.call('getOrganization', {});
  const metrics = await (await fetch(`${tcp.url}/metrics`)).text();
  t.regex(
    metrics,
    /slipway_http_requests_total\{method="GET",route="\/v1\/organization",status="200"\} 1/,
  );
  t.regex(metrics, /slipway_pending_builders 0/);
  t.regex(metrics, /slipway_builder_acquire_seconds_bucket\{le="0.1",path="hot"\} 0/);
});

test('on AWS a machine proves its instance identity and waits for its volume to attach', async (t) => {
  const tcp = await startTestControlPlane(t);
  const created = await tcp.user.call('createConnection', {
    body: {
      name: 'aws',
      provider: 'aws',
      aws: {
        region: 'eu-west-1',
        launchTemplates: { 'linux/amd64': 'lt-0123456789abcdef0' },
        subnets: [{ id: 'subnet-0123456789abcdef0', zone: 'eu-west-1a' }],
      },
    },
  });
  t.deepEqual(created.connection.settings.platforms, ['linux/amd64']);
  await tcp.user.call('createProject', { body: { name: 'app', connection: 'aws' } });
  await requestBuild(tcp.user, 'app');
  const agent = new ScriptedAgent(tcp.client(created.token));
  await agent.sync();
  const fleet = agent.fleet!;
  t.is(fleet.machines[0]!.zone, 'eu-west-1a');
  t.is(fleet.volumes[0]!.zone, 'eu-west-1a');
  t.deepEqual(fleet.aws?.region, 'eu-west-1');
  const m = fleet.machines[0]!;
  const v = fleet.volumes[0]!;
  // The agent sees the instance, and the volume still detached.
  agent.observation = {
    observedAt: new Date().toISOString(),
    machines: [
      {
        id: m.id,
        state: 'running',
        address: '10.0.1.5',
        zone: 'eu-west-1a',
        providerId: 'i-0aaaaaaaaaaaaaaaa',
      },
    ],
    volumes: [
      { id: v.id, state: 'available', zone: 'eu-west-1a', providerId: 'vol-0bbbbbbbbbbbbbbbb' },
    ],
  };
  await agent.sync();

  const machine = new ScriptedMachine(tcp, m.id, m.registrationToken!, '10.0.1.5');
  const identity = (instanceId: string) => ({
    document: JSON.stringify({ instanceId, region: 'eu-west-1', accountId: '123456789012' }),
    signature: 'c2lnbmF0dXJl',
  });
  const body = await machine.registerBody();
  const missing = await t.throwsAsync(tcp.anonymous.call('machineRegister', { body }), {
    instanceOf: ApiError,
  });
  t.is(missing?.field, 'identity');
  const impostor = await t.throwsAsync(
    tcp.anonymous.call('machineRegister', {
      body: { ...body, identity: identity('i-0cccccccccccccccc') },
    }),
    {
      instanceOf: ApiError,
    },
  );
  t.is(impostor?.status, 403);
  const res = await tcp.anonymous.call('machineRegister', {
    body: { ...body, identity: identity('i-0aaaaaaaaaaaaaaaa') },
  });
  machine.api = tcp.client(res.machineToken);

  const waiting = await machine.task();
  t.is(waiting.kind, 'idle');
  if (waiting.kind === 'idle') t.regex(waiting.reason, /attached to this machine/);
  agent.observation = {
    ...agent.observation,
    volumes: [
      {
        id: v.id,
        state: 'in-use',
        zone: 'eu-west-1a',
        attachedTo: m.id,
        providerId: 'vol-0bbbbbbbbbbbbbbbb',
      },
    ],
  };
  await agent.sync();
  const task = await machine.task();
  t.is(task.kind, 'buildkit');
  if (task.kind === 'buildkit') {
    t.is(task.volume.providerId, 'vol-0bbbbbbbbbbbbbbbb');
    const cert = new (await import('node:crypto')).X509Certificate(task.serverCertificate);
    t.regex(cert.subjectAltName ?? '', /IP Address:10\.0\.1\.5/);
  }
});
