// The certificates the control plane issues, judged by real TLS handshakes: a node:tls server
// with one machine's server certificate and client CA accepts that machine's build certificate,
// and refuses another machine's and an expired one. A stopped machine's CA is destroyed and a
// restarted machine gets a new one; CSRs asking for names they should not get are refused.
import tls from 'node:tls';
import test from 'ava';
import { ApiError } from '../common/api';
import * as pki from '../common/pki';
import { waitFor } from '../common/wait';
import { builderServerName } from '../common/protocol';
import { signClientCertificate } from '../control-plane/ca';
import {
  buildCsr,
  requestBuild,
  registeredMachine,
  ScriptedMachine,
  startTestControlPlane,
  type TestControlPlane,
} from './helpers/control-plane';

/** A machine with BuildKit reported ready and its build's ready answer. */
async function readyBuilder(tcp: TestControlPlane, names: { connection: string; project: string }) {
  const w = await registeredMachine(tcp, tcp.user, names);
  const task = await w.machine.task();
  if (task.kind !== 'buildkit') throw new Error(`expected a buildkit task, got ${task.kind}`);
  await w.machine.report('ready');
  return { ...w, task };
}

async function readyBuild(tcp: TestControlPlane, project: string) {
  const { keys, csr } = await buildCsr();
  const build = await tcp.user.call('createBuild', {
    body: { project, platforms: [{ platform: 'linux/amd64', csr }] },
  });
  const builder = await tcp.user.call('waitBuilder', {
    params: { buildId: build.id },
    query: { platform: 'linux/amd64', wait: 5 },
  });
  if (builder.state !== 'ready') throw new Error(`builder not ready: ${builder.reason}`);
  return { build, builder, key: await pki.privateKeyToPem(keys.privateKey) };
}

/** A TLS server as BuildKit runs it: the machine's certificate, client certificates required. */
async function tlsServer(
  t: Parameters<typeof startTestControlPlane>[0],
  cert: string,
  key: string,
  clientCa: string,
) {
  const server = tls.createServer(
    { cert, key, ca: clientCa, requestCert: true, rejectUnauthorized: true },
    (socket) => {
      socket.end('hello\n');
    },
  );
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as { port: number }).port;
}

/** Connects with a client certificate; resolves with what the server sent, or the error. */
function handshake(
  port: number,
  opts: { ca: string; cert: string; key: string; servername: string },
): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...opts });
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('end', () => resolve(data.trim() || 'refused: no data'));
    socket.on('error', (err) => resolve(`refused: ${err.message}`));
  });
}

test('a build certificate opens only its own machine, and only until it expires', async (t) => {
  const tcp = await startTestControlPlane(t);
  const one = await readyBuilder(tcp, { connection: 'one', project: 'one' });
  const two = await readyBuilder(tcp, { connection: 'two', project: 'two' });
  const mine = await readyBuild(tcp, one.project.id);
  const theirs = await readyBuild(tcp, two.project.id);
  t.not(one.task.clientCa, two.task.clientCa, 'each machine has its own CA');

  const port = await tlsServer(
    t,
    one.task.serverCertificate,
    await one.machine.serverKeyPem(),
    one.task.clientCa,
  );
  const servername = builderServerName(one.machine.machineId);
  const ca = mine.builder.caCertificate!;

  t.is(
    await handshake(port, { ca, cert: mine.builder.clientCertificate!, key: mine.key, servername }),
    'hello',
  );
  t.regex(
    await handshake(port, {
      ca,
      cert: theirs.builder.clientCertificate!,
      key: theirs.key,
      servername,
    }),
    /^refused/,
  );

  // The same CA (its sealed key from the database) signing a certificate that has expired.
  const row = await tcp.cp.db('machines').where({ id: one.machine.machineId }).first();
  const { keys, csr } = await buildCsr();
  const expired = await signClientCertificate({
    secrets: tcp.cp.secrets,
    machineId: one.machine.machineId,
    caCertificate: row.ca_certificate,
    sealedKey: row.ca_key_sealed,
    caNotAfter: Number(row.ca_not_after),
    csr,
    buildId: mine.build.id,
    organizationId: tcp.organizationId,
    now: Date.now() - 3 * 3600_000,
    deadline: Date.now() - 3600_000,
  });
  t.true(pki.describeCertificate(expired).validTo.getTime() < Date.now());
  t.regex(
    await handshake(port, {
      ca,
      cert: expired,
      key: await pki.privateKeyToPem(keys.privateKey),
      servername,
    }),
    /^refused/,
  );

  // The client checks the server too: the machine's name is in its certificate, another's is not.
  t.regex(
    await handshake(port, {
      ca,
      cert: mine.builder.clientCertificate!,
      key: mine.key,
      servername: builderServerName(two.machine.machineId),
    }),
    /^refused/,
  );
  t.regex(
    await handshake(port, {
      ca: theirs.builder.caCertificate!,
      cert: mine.builder.clientCertificate!,
      key: mine.key,
      servername,
    }),
    /^refused/,
  );
});

test('the CA key is sealed at rest, destroyed when the machine stops, and new after a restart', async (t) => {
  const tcp = await startTestControlPlane(t);
  const w = await readyBuilder(tcp, { connection: 'local', project: 'app' });
  await tcp.user.call('updateConnection', {
    params: { connectionId: w.connection.id },
    body: { settings: { idleTimeoutSeconds: 10 } },
  });
  const row = await tcp.cp.db('machines').where({ id: w.machine.machineId }).first();
  t.regex(row.ca_key_sealed, /^v1\./);
  t.false(row.ca_key_sealed.includes('PRIVATE KEY'));
  await tcp.user.call('finishBuild', {
    params: { buildId: w.build.id },
    body: { result: 'succeeded' },
  });

  // Idle for the timeout: the machine is stopped and its CA destroyed.
  const stopped = await waitFor(
    async () => {
      const r = await tcp.cp.db('machines').where({ id: w.machine.machineId }).first();
      return r.desired_state === 'stopped' ? r : undefined;
    },
    { timeoutMs: 30_000, what: 'the idle machine to be stopped' },
  );
  t.is(stopped.ca_key_sealed, null);
  t.is(stopped.ca_certificate, null);
  const idle = await w.machine.task();
  t.is(idle.kind, 'idle');
  await w.agent.sync();
  t.is(w.agent.fleet!.machines[0]!.state, 'stopped');
  await w.agent.applyFleet();

  // A new build takes the warm path: the machine is started again and gets a new CA.
  const { csr } = await buildCsr();
  const build = await tcp.user.call('createBuild', {
    body: { project: w.project.id, platforms: [{ platform: 'linux/amd64', csr }] },
  });
  t.is(build.builders[0]!.path, 'warm');
  await w.agent.sync();
  t.is(w.agent.fleet!.machines[0]!.state, 'running');
  await w.agent.applyFleet();
  const task = await w.machine.task();
  t.is(task.kind, 'buildkit');
  if (task.kind === 'buildkit') t.not(task.clientCa, w.task.clientCa);
  await w.machine.report('ready');
  const ready = await tcp.user.call('waitBuilder', {
    params: { buildId: build.id },
    query: { platform: 'linux/amd64', wait: 5 },
  });
  t.is(ready.state, 'ready');
  t.is(ready.path, 'warm');
});

test('CSRs asking for names they should not get are refused', async (t) => {
  const tcp = await startTestControlPlane(t);
  const w = await registeredMachine(tcp, tcp.user);

  // A build's CSR with a server name in it.
  const keys = await pki.generateKeyPair();
  const withName = await pki.createCsr(keys, { commonName: 'cli', dnsNames: ['evil.example.com'] });
  const refused = await t.throwsAsync(
    tcp.user.call('createBuild', {
      body: { project: w.project.id, platforms: [{ platform: 'linux/amd64', csr: withName }] },
    }),
    { instanceOf: ApiError },
  );
  t.is(refused?.code, 'invalid_csr');
  t.is(refused?.field, 'platforms.0.csr');

  // A machine whose CSR asks for another host than it advertises (a second machine in the fleet).
  await tcp.user.call('createProject', { body: { name: 'second', connection: w.connection.id } });
  await requestBuild(tcp.user, 'second');
  await w.agent.sync();
  const fresh = w.agent.fleet!.machines.find((m) => m.registrationToken !== null)!;
  const other = new ScriptedMachine(tcp, fresh.id, fresh.registrationToken!);
  const badCsr = await pki.createCsr(keys, { commonName: fresh.id, dnsNames: ['www.example.com'] });
  const bad = await t.throwsAsync(
    tcp.anonymous.call('machineRegister', {
      body: {
        machineId: fresh.id,
        registrationToken: fresh.registrationToken!,
        platform: 'linux/amd64',
        endpoint: { host: '127.0.0.1', port: 1234 },
        csr: badCsr,
        agentVersion: 't',
      },
    }),
    { instanceOf: ApiError },
  );
  t.is(bad?.code, 'invalid_csr');
  t.is(bad?.field, 'csr');
  // Refused means nothing happened: it can still register properly, once.
  await other.register();
  const again = await t.throwsAsync(other.register(), { instanceOf: ApiError });
  t.is(again?.code, 'already_registered');
  // A registration token of one machine does not register another.
  const stolen = await t.throwsAsync(
    tcp.anonymous.call('machineRegister', {
      body: {
        machineId: w.machine.machineId,
        registrationToken: fresh.registrationToken!,
        platform: 'linux/amd64',
        endpoint: { host: '127.0.0.1', port: 1 },
        csr: badCsr,
        agentVersion: 't',
      },
    }),
    { instanceOf: ApiError },
  );
  t.is(stolen?.status, 401);
});
