// The certificate authority (DESIGN.md section 4): one CA per machine assignment, its key sealed
// with the server secret while the machine runs; the machine's server certificate from its CSR;
// each build's client certificate from the CLI's CSR. Private keys of machines and CLIs never
// come here: only CSRs do, and a CSR asking for a name it should not get is refused.
import { isIP } from 'node:net';
import * as pki from '../common/pki';
import { builderServerName } from '../common/protocol';
import type { ServerSecrets } from './secrets';

export { CsrError } from '../common/pki';

const clockSkewMs = 5 * 60_000;

/** A machine's server CSR may name only the machine: its id, server name and advertised host. */
export async function checkServerCsr(
  pem: string,
  machineId: string,
  advertisedHost: string,
): Promise<pki.ParsedCsr> {
  const csr = await pki.parseCsr(pem);
  const serverName = builderServerName(machineId);
  const hostIsIp = isIP(advertisedHost) !== 0;
  const allowedDns = new Set(
    [serverName, ...(hostIsIp ? [] : [advertisedHost])].map((n) => n.toLowerCase()),
  );
  const allowedCn = new Set(
    ['', machineId, serverName, advertisedHost].map((n) => n.toLowerCase()),
  );
  refuseExtras(csr);
  const wrongDns = csr.dnsNames.find((n) => !allowedDns.has(n.toLowerCase()));
  const wrongIp = csr.ipAddresses.find((ip) => !hostIsIp || ip !== advertisedHost);
  if (!allowedCn.has(csr.commonName.toLowerCase())) {
    throw new pki.CsrError(
      `the CSR's common name ${csr.commonName} is not this machine's; use ${machineId} or ${serverName}`,
    );
  }
  if (wrongDns !== undefined || wrongIp !== undefined) {
    throw new pki.CsrError(
      `the CSR asks for ${wrongDns ?? wrongIp}, which is not this machine's; it may name only ${serverName} and the advertised host ${advertisedHost}`,
    );
  }
  return csr;
}

/**
 * Certificates get the names and extensions chosen here; a CSR that asks for more (an email or
 * URI name, CA powers, key usages) asks for what it will not get, and is refused as such.
 */
function refuseExtras(csr: pki.ParsedCsr): void {
  if (csr.otherNames.length > 0) {
    throw new pki.CsrError(
      `the CSR asks for ${csr.otherNames.join(', ')}; only DNS names and IP addresses can be certified`,
    );
  }
  if (csr.otherExtensions.length > 0) {
    throw new pki.CsrError(
      `the CSR requests extensions (${csr.otherExtensions.join(', ')}) a Slipway certificate never carries; request none besides subject alternative names`,
    );
  }
}

/** A build's CSR names nothing: the certificate's subject is the build, chosen here. */
export async function checkClientCsr(pem: string): Promise<pki.ParsedCsr> {
  const csr = await pki.parseCsr(pem);
  refuseExtras(csr);
  const names = [...csr.dnsNames, ...csr.ipAddresses];
  if (names.length > 0) {
    throw new pki.CsrError(
      `a build's CSR must not ask for DNS names or IP addresses (it asks for ${names.slice(0, 3).join(', ')}${names.length > 3 ? ` and ${names.length - 3} more` : ''})`,
    );
  }
  return csr;
}

export interface MachineCa {
  certificate: string;
  /** The CA key, PKCS#8 sealed with the server secret; bound to the machine id. */
  sealedKey: string;
  notAfter: number;
  serverCertificate: string;
}

/** A new CA for one machine assignment and the machine's server certificate signed by it. */
export async function mintMachineCa(opts: {
  secrets: ServerSecrets;
  machineId: string;
  csr: string;
  advertisedHost: string;
  now: number;
  lifetimeMs: number;
}): Promise<MachineCa> {
  const notBefore = new Date(opts.now - clockSkewMs);
  const notAfter = new Date(opts.now + opts.lifetimeMs);
  const ca = await pki.createCa(`slipway builder ${opts.machineId} CA`, notBefore, notAfter);
  const csr = await checkServerCsr(opts.csr, opts.machineId, opts.advertisedHost);
  const serverName = builderServerName(opts.machineId);
  const hostIsIp = isIP(opts.advertisedHost) !== 0;
  const serverCertificate = await pki.issueCertificate({
    ca: { certPem: ca.certPem, privateKey: ca.keys.privateKey },
    publicKey: csr.publicKey,
    commonName: serverName,
    dnsNames: [serverName, ...(hostIsIp ? [] : [opts.advertisedHost])],
    ipAddresses: hostIsIp ? [opts.advertisedHost] : [],
    usage: 'server',
    notBefore,
    notAfter,
  });
  const keyDer = await pki.privateKeyToDer(ca.keys.privateKey);
  return {
    certificate: ca.certPem,
    sealedKey: opts.secrets.encrypt(keyDer, `ca:${opts.machineId}`),
    notAfter: notAfter.getTime(),
    serverCertificate,
  };
}

/** The build's client certificate: subject O=<organization>, CN=<build id>; valid to the deadline. */
export async function signClientCertificate(opts: {
  secrets: ServerSecrets;
  machineId: string;
  caCertificate: string;
  sealedKey: string;
  caNotAfter: number;
  csr: string;
  buildId: string;
  organizationId: string;
  now: number;
  deadline: number;
}): Promise<string> {
  const csr = await checkClientCsr(opts.csr);
  const key = await pki.privateKeyFromDer(
    opts.secrets.decrypt(opts.sealedKey, `ca:${opts.machineId}`),
  );
  return pki.issueCertificate({
    ca: { certPem: opts.caCertificate, privateKey: key },
    publicKey: csr.publicKey,
    commonName: opts.buildId,
    organization: opts.organizationId,
    usage: 'client',
    notBefore: new Date(opts.now - clockSkewMs),
    notAfter: new Date(Math.min(opts.deadline, opts.caNotAfter)),
  });
}
