// The certificate matrix, judged by real buildkitd processes run by real machine-agents: a build's
// own certificate opens its builder; an expired one, one not yet valid, one from a foreign CA,
// another build's on another machine, the machine's own server certificate used as a client, and
// no certificate at all are each refused by the builder. The client refuses a builder that shows
// a name or CA other than the ones its build was given.
import test from 'ava';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as pki from '../../common/pki';
import { freePort } from '../../common/net';
import { builderServerName } from '../../common/protocol';
import { signClientCertificate } from '../../control-plane/ca';
import {
  buildCsr,
  pendingBuildsOnNewMachines,
  startTestControlPlane,
} from '../helpers/control-plane';
import { ledger } from '../helpers/ledger';
import {
  agentEnv,
  type AgentSettings,
  buildClient,
  startAgentChild,
  waitForBuilder,
} from '../helpers/machine-agent';
import { buildctl, type ClientFiles } from '../helpers/mtls-buildkitd';
import { tempDir } from '../helpers/tmp';

const hour = 3600_000;

test('a real buildkitd accepts only its own build certificate, and the CLI only its own builder', async (t) => {
  const book = ledger(t);
  const tcp = await startTestControlPlane(t);
  const work = await tempDir(t, 'cert-matrix');
  const { agent, builds } = await pendingBuildsOnNewMachines(tcp, ['mine', 'theirs']);
  const machines: { id: string; settings: AgentSettings }[] = [];
  for (const { machine: m } of builds) {
    const settings = {
      apiUrl: tcp.url,
      machineId: m.id,
      registrationToken: m.registrationToken!,
      stateDir: path.join(work, 'machines', m.id),
      volumesDir: path.join(work, 'volumes'),
      buildkitPort: await freePort(),
    };
    await startAgentChild(t, agentEnv(settings), path.join(work, `${m.id}.log`));
    machines.push({ id: m.id, settings });
  }
  // The agent reports the volumes available once the machines registered; BuildKit then starts.
  const [mine, theirs] = await Promise.all(
    builds.map(async (b, i) => {
      let ready;
      do {
        await agent.applyFleet();
        ready = await tcp.user.call('waitBuilder', {
          params: { buildId: b.build.id },
          query: { platform: 'linux/amd64', wait: 5 },
        });
      } while (ready.state === 'pending');
      t.is(ready.state, 'ready', ready.reason);
      return buildClient(
        path.join(work, `cli-${i}`),
        b.keys,
        await waitForBuilder(tcp.user, b.build.id),
      );
    }),
  );
  const target = mine!.target;
  const own = await buildctl(target, mine!.client, ['debug', 'workers']);
  t.is(own.code, 0, own.output);
  book.record('certificate', "the build's own client certificate", 'accepted by its builder');

  /** Writes a key and certificate for buildctl, trusting the builder's CA. */
  const files = async (name: string, cert: string, key: string): Promise<ClientFiles> => {
    const dir = path.join(work, 'forged', name);
    await mkdir(dir, { recursive: true });
    const f = {
      caFile: target.caFile,
      certFile: path.join(dir, 'cert.pem'),
      keyFile: path.join(dir, 'key.pem'),
    };
    await writeFile(f.certFile, cert);
    await writeFile(f.keyFile, key, { mode: 0o600 });
    return f;
  };
  // Certificates signed by the builder's own CA (its sealed key from the database), off in time.
  const row = await tcp.cp.db('machines').where({ id: machines[0]!.id }).first();
  const sameCa = async (name: string, now: number, deadline: number) => {
    const { keys, csr } = await buildCsr();
    const cert = await signClientCertificate({
      secrets: tcp.cp.secrets,
      machineId: machines[0]!.id,
      caCertificate: row.ca_certificate,
      sealedKey: row.ca_key_sealed,
      caNotAfter: Number(row.ca_not_after),
      csr,
      buildId: builds[0]!.build.id,
      organizationId: tcp.organizationId,
      now,
      deadline,
    });
    return files(name, cert, await pki.privateKeyToPem(keys.privateKey));
  };
  const foreignCa = await pki.createCa(
    builderServerName(machines[0]!.id),
    new Date(Date.now() - hour),
    new Date(Date.now() + hour),
  );
  const foreignKeys = await pki.generateKeyPair();
  const foreign = await pki.issueCertificate({
    ca: { certPem: foreignCa.certPem, privateKey: foreignCa.keys.privateKey },
    publicKey: foreignKeys.publicKey,
    commonName: builds[0]!.build.id,
    organization: tcp.organizationId,
    usage: 'client',
    notBefore: new Date(Date.now() - hour),
    notAfter: new Date(Date.now() + hour),
  });
  const stateDir = machines[0]!.settings.stateDir;
  const serverCert = String(row.server_certificate);
  const refused: [string, ClientFiles | Record<string, never>][] = [
    [
      'a certificate of the right build and CA that expired an hour ago',
      await sameCa('expired', Date.now() - 3 * hour, Date.now() - hour),
    ],
    [
      'a certificate of the right build and CA not valid for another hour',
      await sameCa('future', Date.now() + hour, Date.now() + 2 * hour),
    ],
    [
      'a certificate from a foreign CA with the same subject and CA name',
      await files('foreign', foreign, await pki.privateKeyToPem(foreignKeys.privateKey)),
    ],
    [
      "another build's certificate (issued by another machine's CA)",
      { ...theirs!.client, caFile: target.caFile },
    ],
    [
      "the builder's own server certificate and key used as a client",
      await files(
        'server',
        serverCert,
        await readFile(path.join(stateDir, 'server-key.pem'), 'utf8'),
      ),
    ],
    ['no client certificate at all', {}],
  ];
  for (const [what, client] of refused) {
    const r = await buildctl(target, client, ['debug', 'workers']);
    t.not(r.code, 0, `${what}: ${r.output}`);
    t.regex(r.output, /certificate|tls|handshake|connection|broken pipe|Unavailable/i, what);
    book.record('certificate', what, `refused by buildkitd: ${shortReason(r.output)}`);
  }

  // The CLI's side: it trusts only its builder's CA and name.
  const wrongName = await buildctl(
    { ...target, serverName: builderServerName(machines[1]!.id) },
    mine!.client,
    ['debug', 'workers'],
  );
  t.not(wrongName.code, 0, wrongName.output);
  book.record(
    'certificate',
    "the CLI told another machine's server name",
    `refused by the client: ${shortReason(wrongName.output)}`,
  );
  const wrongCa = await buildctl(
    { ...target, caFile: theirs!.target.caFile },
    { ...mine!.client, caFile: theirs!.target.caFile },
    ['debug', 'workers'],
  );
  t.not(wrongCa.code, 0, wrongCa.output);
  book.record(
    'certificate',
    "the CLI trusting another machine's CA",
    `refused by the client: ${shortReason(wrongCa.output)}`,
  );

  // After all that, the own certificate still works.
  t.is((await buildctl(target, mine!.client, ['debug', 'workers'])).code, 0);
});

/** The TLS reason in buildctl's error, in a few words. */
function shortReason(output: string): string {
  const m =
    /(certificate[^"\n]*|tls:[^"\n]*|x509:[^"\n]*|broken pipe|connection reset[^"\n]*)/i.exec(
      output,
    );
  return (m?.[1] ?? output.split('\n').find(Boolean) ?? '').slice(0, 90);
}
