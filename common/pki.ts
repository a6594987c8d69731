// Key pairs, certificate requests and certificates for Slipway's mutual TLS (DESIGN.md section 4).
// Every key is ECDSA P-256. Private keys are generated where they are used and leave that
// process only as 0600 files on the same host; the control plane sees CSRs and certificates.
import 'reflect-metadata'; // @peculiar/x509's dependency injection needs it loaded first
import { webcrypto, randomBytes, X509Certificate as NodeX509 } from 'node:crypto';
import * as x509 from '@peculiar/x509';

type CryptoKey = webcrypto.CryptoKey;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const keyAlgorithm = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const signingAlgorithm = { name: 'ECDSA', hash: 'SHA-256' } as const;

export type KeyPair = webcrypto.CryptoKeyPair;

export async function generateKeyPair(): Promise<KeyPair> {
  return (await webcrypto.subtle.generateKey(keyAlgorithm, true, ['sign', 'verify'])) as KeyPair;
}

/** PKCS#8 PEM, the form buildkitd and buildctl read. */
export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

export async function privateKeyFromPem(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decode(pem)[0];
  if (!der) throw new Error('no PEM block found in the private key');
  return webcrypto.subtle.importKey('pkcs8', der, keyAlgorithm, true, ['sign']);
}

/** A key pair from its PKCS#8 PEM: the public half is derived from the private key. */
export async function keyPairFromPem(pem: string): Promise<KeyPair> {
  const privateKey = await privateKeyFromPem(pem);
  const { kty, crv, x, y } = await webcrypto.subtle.exportKey('jwk', privateKey);
  const publicKey = await webcrypto.subtle.importKey(
    'jwk',
    { kty, crv, x, y },
    keyAlgorithm,
    true,
    ['verify'],
  );
  return { privateKey, publicKey };
}

export async function privateKeyToDer(key: CryptoKey): Promise<Buffer> {
  return Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
}

export async function privateKeyFromDer(der: Uint8Array): Promise<CryptoKey> {
  return webcrypto.subtle.importKey('pkcs8', der, keyAlgorithm, true, ['sign']);
}

export interface CsrSubject {
  commonName: string;
  dnsNames?: string[];
  ipAddresses?: string[];
}

function sanExtension(dnsNames: string[] = [], ipAddresses: string[] = []): x509.Extension[] {
  const names = [
    ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...ipAddresses.map((value) => ({ type: 'ip' as const, value })),
  ];
  return names.length ? [new x509.SubjectAlternativeNameExtension(names, false)] : [];
}

function escapeRdn(value: string): string {
  return value.replace(/([,+"\\<>;=#])/g, '\\$1');
}

export async function createCsr(keys: KeyPair, subject: CsrSubject): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${escapeRdn(subject.commonName)}`,
    keys,
    signingAlgorithm,
    extensions: sanExtension(subject.dnsNames, subject.ipAddresses),
  });
  return csr.toString('pem');
}

export class CsrError extends Error {
  readonly code = 'invalid_csr';
}

export interface ParsedCsr {
  publicKey: x509.PublicKey;
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  /** Subject alternative names of any other type (email, URI, ...), as `type:value`. */
  otherNames: string[];
  /** OIDs of the extensions requested besides subject alternative names. */
  otherExtensions: string[];
}

const maxCsrPemLength = 8192;

/** Parses and verifies a PEM CSR: one block, ECDSA P-256, a valid self-signature. */
export async function parseCsr(pem: string): Promise<ParsedCsr> {
  if (pem.length > maxCsrPemLength)
    throw new CsrError(`the CSR is larger than ${maxCsrPemLength} bytes`);
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch {
    throw new CsrError('the CSR is not a PEM-encoded PKCS#10 certificate request');
  }
  const alg = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') {
    throw new CsrError(
      'the CSR key must be ECDSA P-256 (generate it with `openssl ecparam -name prime256v1`)',
    );
  }
  let valid = false;
  try {
    valid = await csr.verify();
  } catch {
    valid = false;
  }
  if (!valid) throw new CsrError('the CSR signature does not verify against its own public key');
  const san = csr.extensions.find(
    (e): e is x509.SubjectAlternativeNameExtension =>
      e instanceof x509.SubjectAlternativeNameExtension,
  );
  const names = san?.names.toJSON() ?? [];
  return {
    publicKey: csr.publicKey,
    commonName: csr.subjectName.getField('CN')[0] ?? '',
    dnsNames: names.filter((n) => n.type === 'dns').map((n) => n.value),
    ipAddresses: names.filter((n) => n.type === 'ip').map((n) => n.value),
    otherNames: names
      .filter((n) => n.type !== 'dns' && n.type !== 'ip')
      .map((n) => `${n.type}:${n.value}`),
    otherExtensions: csr.extensions.filter((e) => e !== san).map((e) => e.type),
  };
}

export interface CertificateAuthority {
  certPem: string;
  keys: KeyPair;
}

function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // positive
  return bytes.toString('hex');
}

export async function createCa(
  commonName: string,
  notBefore: Date,
  notAfter: Date,
): Promise<CertificateAuthority> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${escapeRdn(commonName)}`,
    notBefore,
    notAfter,
    keys,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keys };
}

export interface IssueRequest {
  ca: { certPem: string; privateKey: CryptoKey };
  publicKey: x509.PublicKey | CryptoKey;
  commonName: string;
  organization?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  usage: 'server' | 'client';
  notBefore: Date;
  notAfter: Date;
}

export async function issueCertificate(req: IssueRequest): Promise<string> {
  const caCert = new x509.X509Certificate(req.ca.certPem);
  const subject =
    (req.organization ? `O=${escapeRdn(req.organization)}, ` : '') +
    `CN=${escapeRdn(req.commonName)}`;
  const publicKey =
    req.publicKey instanceof x509.PublicKey ? await req.publicKey.export() : req.publicKey;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject,
    issuer: caCert.subject,
    notBefore: req.notBefore,
    notAfter: req.notAfter,
    publicKey,
    signingKey: req.ca.privateKey,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(
        [
          req.usage === 'server'
            ? x509.ExtendedKeyUsage.serverAuth
            : x509.ExtendedKeyUsage.clientAuth,
        ],
        false,
      ),
      ...sanExtension(req.dnsNames, req.ipAddresses),
      await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
    ],
  });
  return cert.toString('pem');
}

/** Subject, validity and fingerprint of a PEM certificate, through Node's own parser. */
export function describeCertificate(pem: string): {
  subject: string;
  issuer: string;
  validFrom: Date;
  validTo: Date;
  fingerprint256: string;
} {
  const cert = new NodeX509(pem);
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    validFrom: new Date(cert.validFrom),
    validTo: new Date(cert.validTo),
    fingerprint256: cert.fingerprint256,
  };
}
