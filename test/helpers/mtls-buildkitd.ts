// A buildkitd with mutual TLS on a loopback port, its own CA, and a way to mint client
// certificates from that CA or any other, for tests that talk to a real builder.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import * as pki from '../../common/pki';
import { freePort } from '../../common/net';
import { toolPath } from '../../common/tools';
import { Buildkitd } from '../../machine/buildkitd';
import { renderBuildkitdConfig } from '../../machine/buildkitd-config';
import { tempDir } from './tmp';

const execFileAsync = promisify(execFile);
const hour = 3600_000;

export interface ClientFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** Where buildctl connects and what it trusts. */
export interface BuildkitTarget {
  address: string;
  serverName: string;
  /** The CA that signed the server's certificate. */
  caFile: string;
}

export interface MtlsBuildkitd extends BuildkitTarget {
  ca: pki.CertificateAuthority;
  dir: string;
  /** Writes a client key (0600) and a certificate signed by `ca` (default: this builder's CA). */
  clientFiles(name: string, ca?: pki.CertificateAuthority): Promise<ClientFiles>;
}

export interface MtlsBuildkitdFiles extends MtlsBuildkitd {
  /** buildkitd.toml as the machine-agent renders it: mTLS on TCP, a unix socket, debug on loopback. */
  configFile: string;
  unixSocket: string;
  logFile: string;
}

/**
 * Writes what a buildkitd needs to serve mutual TLS on a loopback port under `dir` (its own CA,
 * server key and certificate, config), without starting it. `root` is BuildKit's state directory.
 */
export async function writeMtlsBuildkitdFiles(
  dir: string,
  root = path.join(dir, 'root'),
): Promise<MtlsBuildkitdFiles> {
  const now = Date.now();
  const ca = await pki.createCa(
    'slipway test builder CA',
    new Date(now - hour),
    new Date(now + hour),
  );
  const serverName = 'builder.slipway.test';
  const serverKeys = await pki.generateKeyPair();
  const serverCert = await pki.issueCertificate({
    ca: { certPem: ca.certPem, privateKey: ca.keys.privateKey },
    publicKey: serverKeys.publicKey,
    commonName: serverName,
    dnsNames: [serverName],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
    notBefore: new Date(now - hour),
    notAfter: new Date(now + hour),
  });
  const tls = {
    certFile: path.join(dir, 'server.pem'),
    keyFile: path.join(dir, 'server-key.pem'),
    caFile: path.join(dir, 'client-ca.pem'),
  };
  await writeFile(tls.certFile, serverCert);
  await writeFile(tls.keyFile, await pki.privateKeyToPem(serverKeys.privateKey), { mode: 0o600 });
  await writeFile(tls.caFile, ca.certPem);
  const port = await freePort();
  const unixSocket = path.join(dir, 'buildkitd.sock');
  const configFile = path.join(dir, 'buildkitd.toml');
  await writeFile(
    configFile,
    renderBuildkitdConfig({
      root,
      tcpAddress: `127.0.0.1:${port}`,
      unixSocket,
      debugAddress: `127.0.0.1:${await freePort()}`,
      tls,
      maxUsedBytes: 2 * 1024 ** 3,
      minFreeBytes: 1024 ** 3,
    }),
  );
  return {
    address: `tcp://127.0.0.1:${port}`,
    serverName,
    caFile: tls.caFile,
    ca,
    dir,
    configFile,
    unixSocket,
    logFile: path.join(dir, 'buildkitd.log'),
    clientFiles: (name, signer = ca) =>
      writeClientFiles(path.join(dir, 'clients', name), name, signer, ca.certPem),
  };
}

export async function startMtlsBuildkitd(t: ExecutionContext): Promise<MtlsBuildkitd> {
  const files = await writeMtlsBuildkitdFiles(await tempDir(t, 'buildkitd'));
  const daemon = new Buildkitd({
    configFile: files.configFile,
    listeners: 2,
    unixSocket: files.unixSocket,
    logFile: files.logFile,
  });
  await daemon.start(60_000);
  t.teardown(() => daemon.stop(10_000));
  return files;
}

/** A client key (0600) and a certificate for it signed by `signer`, plus the CA to trust. */
export async function writeClientFiles(
  dir: string,
  name: string,
  signer: pki.CertificateAuthority,
  trustedCaPem: string,
): Promise<ClientFiles> {
  await mkdir(dir, { recursive: true });
  const keys = await pki.generateKeyPair();
  const cert = await pki.issueCertificate({
    ca: { certPem: signer.certPem, privateKey: signer.keys.privateKey },
    publicKey: keys.publicKey,
    commonName: name,
    usage: 'client',
    notBefore: new Date(Date.now() - hour),
    notAfter: new Date(Date.now() + hour),
  });
  const files = {
    caFile: path.join(dir, 'ca.pem'),
    certFile: path.join(dir, 'cert.pem'),
    keyFile: path.join(dir, 'key.pem'),
  };
  await writeFile(files.caFile, trustedCaPem);
  await writeFile(files.certFile, cert);
  await writeFile(files.keyFile, await pki.privateKeyToPem(keys.privateKey), { mode: 0o600 });
  return files;
}

/** buildctl arguments that build the Dockerfile in `context` and export the result to `dest`. */
export function dockerfileBuildArgs(context: string, dest: string): string[] {
  return [
    'build',
    '--frontend',
    'dockerfile.v0',
    '--local',
    `context=${context}`,
    '--local',
    `dockerfile=${context}`,
    '--output',
    `type=local,dest=${dest}`,
    '--progress',
    'plain',
  ];
}

export interface BuildctlResult {
  code: number;
  output: string;
}

/** Runs buildctl against the builder; never throws on a non-zero exit. */
export async function buildctl(
  b: BuildkitTarget,
  client: Partial<ClientFiles>,
  args: string[],
): Promise<BuildctlResult> {
  const tlsArgs = ['--addr', b.address, '--tlsservername', b.serverName];
  tlsArgs.push('--tlscacert', b.caFile);
  if (client.certFile) tlsArgs.push('--tlscert', client.certFile);
  if (client.keyFile) tlsArgs.push('--tlskey', client.keyFile);
  try {
    const { stdout, stderr } = await execFileAsync(toolPath('buildctl'), [...tlsArgs, ...args], {
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof e.code === 'number' ? e.code : 1,
      output: `${e.stdout ?? ''}${e.stderr ?? ''}`,
    };
  }
}
