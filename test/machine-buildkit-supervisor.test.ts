// buildkitd under the machine-agent's supervisor, for real: it starts with the task's
// certificates and builds for a client of the task's CA, comes back after being killed (counted
// and reported), restarts on a new CA with its cache intact, and stops cleanly.
import test from 'ava';
import { copyFile, cp, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as pki from '../common/pki';
import { freePort } from '../common/net';
import { waitFor } from '../common/wait';
import { BuildkitSupervisor, type BuildkitSpec } from '../machine/buildkit-supervisor';
import { buildctl, dockerfileBuildArgs, writeClientFiles } from './helpers/mtls-buildkitd';
import { captureLogger } from './helpers/logger';
import { tempDir } from './helpers/tmp';

const hour = 3600_000;
const fixtures = path.join(__dirname, 'fixtures');
const serverName = 'mch_supervisor1.builders.slipway.internal';

async function serverCertificate(ca: pki.CertificateAuthority, keys: pki.KeyPair) {
  return pki.issueCertificate({
    ca: { certPem: ca.certPem, privateKey: ca.keys.privateKey },
    publicKey: keys.publicKey,
    commonName: serverName,
    dnsNames: [serverName],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
    notBefore: new Date(Date.now() - hour),
    notAfter: new Date(Date.now() + hour),
  });
}

test('supervised buildkitd serves its CA’s clients, survives a kill, and keeps its cache across a new CA', async (t) => {
  const dir = await tempDir(t, 'supervisor');
  const keys = await pki.generateKeyPair();
  const serverKeyFile = path.join(dir, 'server-key.pem');
  await writeFile(serverKeyFile, await pki.privateKeyToPem(keys.privateKey), { mode: 0o600 });
  const port = await freePort();
  const { logger } = captureLogger();
  let changes = 0;
  const supervisor = new BuildkitSupervisor({
    dir,
    serverKeyFile,
    listenAddress: `127.0.0.1:${port}`,
    debugAddress: `127.0.0.1:${await freePort()}`,
    startTimeoutMs: 90_000,
    stopGraceMs: 10_000,
    restartBackoff: { initialMs: 200, maxMs: 2000 },
    maxFailedStarts: 3,
    logger,
    onChange: () => changes++,
  });
  t.teardown(() => supervisor.stop());

  const ca1 = await pki.createCa(
    'machine CA 1',
    new Date(Date.now() - hour),
    new Date(Date.now() + hour),
  );
  const spec: BuildkitSpec = {
    root: path.join(dir, 'cache'),
    serverCertificate: await serverCertificate(ca1, keys),
    clientCa: ca1.certPem,
    gc: { maxUsedBytes: 2 * 1024 ** 3, minFreeBytes: 512 * 1024 ** 2 },
  };
  await supervisor.apply(spec);
  t.is(supervisor.state, 'ready');
  t.true(supervisor.alive);
  t.true(changes >= 2, 'starting and ready were both announced');
  t.is((await stat(path.join(dir, 'buildkitd.toml'))).mode & 0o777, 0o600);
  t.regex(await readFile(path.join(dir, 'buildkitd.toml'), 'utf8'), /maxUsedSpace = "2147483648"/);

  const target = (caFile: string) => ({ address: `tcp://127.0.0.1:${port}`, serverName, caFile });
  const client1 = await writeClientFiles(path.join(dir, 'client1'), 'bld_one', ca1, ca1.certPem);

  // A RUN step, so the cache has something worth keeping.
  const context = path.join(dir, 'busybox-run');
  await cp(path.join(fixtures, 'busybox-run'), context, { recursive: true });
  await copyFile('/bin/busybox', path.join(context, 'busybox'));
  const first = await buildctl(target(client1.caFile), client1, [
    ...dockerfileBuildArgs(context, path.join(dir, 'out1')),
  ]);
  t.is(first.code, 0, first.output);
  t.is(await readFile(path.join(dir, 'out1', 'run.txt'), 'utf8'), 'made-by-run\n');

  // Killed from outside (OOM killer, an operator): it comes back and says so.
  const firstPid = supervisor.pid!;
  process.kill(firstPid, 'SIGKILL');
  await waitFor(() => supervisor.state === 'ready' && supervisor.pid !== firstPid, {
    timeoutMs: 90_000,
    what: 'buildkitd to be restarted',
  });
  t.is(supervisor.restarts, 1);
  t.regex(supervisor.lastEvent ?? '', /exited unexpectedly \(killed by SIGKILL\)/);
  t.is(await readFile(path.join(dir, 'buildkitd.pid'), 'utf8'), `${supervisor.pid}\n`);
  const afterKill = await buildctl(target(client1.caFile), client1, ['debug', 'workers']);
  t.is(afterKill.code, 0, afterKill.output);

  // Applying the same task again changes nothing.
  const samePid = supervisor.pid;
  await supervisor.apply(spec);
  t.is(supervisor.pid, samePid);

  // A new task generation with a new CA: restarted on the same root, cache kept.
  const ca2 = await pki.createCa(
    'machine CA 2',
    new Date(Date.now() - hour),
    new Date(Date.now() + hour),
  );
  await supervisor.apply({
    ...spec,
    serverCertificate: await serverCertificate(ca2, keys),
    clientCa: ca2.certPem,
  });
  t.not(supervisor.pid, samePid);
  const client2 = await writeClientFiles(path.join(dir, 'client2'), 'bld_two', ca2, ca2.certPem);
  const oldClient = await buildctl(target(client2.caFile), client1, ['debug', 'workers']);
  t.not(oldClient.code, 0, 'a certificate from the old CA no longer gets in');
  t.notRegex(oldClient.output, /linux\/amd64/);
  const second = await buildctl(target(client2.caFile), client2, [
    ...dockerfileBuildArgs(context, path.join(dir, 'out2')),
  ]);
  t.is(second.code, 0, second.output);
  t.regex(second.output, /CACHED/, 'the RUN step came from the cache built before the restart');

  await supervisor.stop();
  t.is(supervisor.state, 'stopped');
  t.false(supervisor.alive);
  await t.throwsAsync(stat(path.join(dir, 'buildkitd.pid')));
});

test('a server certificate for another key is refused before buildkitd is touched', async (t) => {
  const dir = await tempDir(t, 'supervisor-mismatch');
  const serverKeyFile = path.join(dir, 'server-key.pem');
  const ours = await pki.generateKeyPair();
  await writeFile(serverKeyFile, await pki.privateKeyToPem(ours.privateKey), { mode: 0o600 });
  const ca = await pki.createCa(
    'machine CA',
    new Date(Date.now() - hour),
    new Date(Date.now() + hour),
  );
  const supervisor = new BuildkitSupervisor({
    dir,
    serverKeyFile,
    listenAddress: `127.0.0.1:${await freePort()}`,
    debugAddress: `127.0.0.1:${await freePort()}`,
    startTimeoutMs: 60_000,
    stopGraceMs: 5000,
    restartBackoff: { initialMs: 200, maxMs: 2000 },
    maxFailedStarts: 3,
    logger: captureLogger().logger,
    onChange: () => undefined,
  });
  const err = await t.throwsAsync(
    supervisor.apply({
      root: path.join(dir, 'cache'),
      serverCertificate: await serverCertificate(ca, await pki.generateKeyPair()),
      clientCa: ca.certPem,
      gc: { maxUsedBytes: 1024 ** 3, minFreeBytes: 0 },
    }),
  );
  t.is((err as { code?: string }).code, 'certificate_mismatch');
  t.false(supervisor.alive);
});
