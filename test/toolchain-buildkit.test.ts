// Proves the BuildKit built by `npm run tools` builds real Dockerfiles over mutual TLS on a
// loopback port, and refuses clients without a certificate from its CA.
import test from 'ava';
import { copyFile, cp, readFile } from 'node:fs/promises';
import path from 'node:path';
import * as pki from '../common/pki';
import { startMtlsBuildkitd, buildctl, dockerfileBuildArgs } from './helpers/mtls-buildkitd';
import { tempDir } from './helpers/tmp';

const fixtures = path.join(__dirname, 'fixtures');

test('buildkitd with mutual TLS builds Dockerfiles for a client of its CA and refuses others', async (t) => {
  const builder = await startMtlsBuildkitd(t);
  const work = await tempDir(t, 'buildkit-proof');
  const good = await builder.clientFiles('build-1');

  const scratchOut = path.join(work, 'scratch-out');
  const scratch = await buildctl(
    builder,
    good,
    dockerfileBuildArgs(path.join(fixtures, 'scratch-copy'), scratchOut),
  );
  t.is(scratch.code, 0, scratch.output);
  t.is(
    await readFile(path.join(scratchOut, 'hello.txt'), 'utf8'),
    'hello from a slipway builder\n',
  );

  // A RUN step needs an executable base; Debian's static busybox stands in for a pulled image.
  const runContext = path.join(work, 'busybox-run');
  await cp(path.join(fixtures, 'busybox-run'), runContext, { recursive: true });
  await copyFile('/bin/busybox', path.join(runContext, 'busybox'));
  const runOut = path.join(work, 'run-out');
  const run = await buildctl(builder, good, dockerfileBuildArgs(runContext, runOut));
  t.is(run.code, 0, run.output);
  t.is(await readFile(path.join(runOut, 'run.txt'), 'utf8'), 'made-by-run\n');

  const now = Date.now();
  const otherCa = await pki.createCa(
    'some other CA',
    new Date(now - 60_000),
    new Date(now + 3600_000),
  );
  const stranger = await builder.clientFiles('stranger', otherCa);
  const refusedStranger = await buildctl(builder, stranger, ['debug', 'workers']);
  t.not(refusedStranger.code, 0, 'a certificate from another CA is refused');
  // TLS 1.3 rejects the client certificate after the handshake, so the words vary
  // (bad certificate, broken pipe, connection reset); what matters is that no worker is listed.
  t.notRegex(refusedStranger.output, /linux\/amd64/);

  const refusedAnonymous = await buildctl(builder, {}, ['debug', 'workers']);
  t.not(refusedAnonymous.code, 0, 'a client without a certificate is refused');
  t.notRegex(refusedAnonymous.output, /linux\/amd64/);

  const accepted = await buildctl(builder, good, ['debug', 'workers']);
  t.is(accepted.code, 0, 'the right client still gets in');
  t.regex(accepted.output, /linux\/amd64/);
});
