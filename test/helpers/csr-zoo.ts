// Certificate requests a client should never send: other key types, bad signatures, garbage in PEM
// armour, certificates passed off as requests, and requests for names or powers they must not
// get. Each is a real PKCS#10 structure (made with @peculiar/x509) unless it is garbage on purpose.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import * as pki from '../../common/pki';
import { builderServerName } from '../../common/protocol';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ecdsa = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const ecdsaSha256 = { name: 'ECDSA', hash: 'SHA-256' } as const;

async function csrWith(
  opts: {
    keys?: webcrypto.CryptoKeyPair;
    signingAlgorithm?: Parameters<
      typeof x509.Pkcs10CertificateRequestGenerator.create
    >[0]['signingAlgorithm'];
    name?: string;
    extensions?: x509.Extension[];
  } = {},
): Promise<string> {
  const keys =
    opts.keys ??
    ((await webcrypto.subtle.generateKey(ecdsa, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: opts.name ?? 'CN=slipway-cli',
    keys,
    signingAlgorithm: opts.signingAlgorithm ?? ecdsaSha256,
    extensions: opts.extensions ?? [],
  });
  return csr.toString('pem');
}

function pem(der: Uint8Array, label = 'CERTIFICATE REQUEST'): string {
  return x509.PemConverter.encode(der, label);
}

export interface BadCsr {
  what: string;
  csr: string;
  /** The error code the control plane must answer with. */
  code: 'invalid_csr' | 'invalid_body';
}

/** Requests that are broken whoever sends them. */
export async function brokenCsrs(): Promise<BadCsr[]> {
  const rsa = (await webcrypto.subtle.generateKey(
    {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    },
    true,
    ['sign', 'verify'],
  )) as webcrypto.CryptoKeyPair;
  const p384 = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const ed25519 = (await webcrypto.subtle.generateKey({ name: 'Ed25519' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const good = await csrWith();
  const der = Buffer.from(x509.PemConverter.decode(good)[0]!);
  const badSignature = Buffer.from(der);
  const flip = badSignature.length - 5;
  badSignature[flip] = badSignature[flip]! ^ 0xff;
  const ca = await pki.createCa(
    'not a request',
    new Date(Date.now() - 60_000),
    new Date(Date.now() + 3600_000),
  );
  const keyPem = await pki.privateKeyToPem((await pki.generateKeyPair()).privateKey);
  return [
    {
      what: 'RSA-2048 key',
      csr: await csrWith({
        keys: rsa,
        signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      }),
      code: 'invalid_csr',
    },
    {
      what: 'ECDSA P-384 key',
      csr: await csrWith({ keys: p384, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } }),
      code: 'invalid_csr',
    },
    {
      what: 'Ed25519 key',
      csr: await csrWith({ keys: ed25519, signingAlgorithm: { name: 'Ed25519' } }),
      code: 'invalid_csr',
    },
    { what: 'signature that does not verify', csr: pem(badSignature), code: 'invalid_csr' },
    { what: 'truncated DER', csr: pem(der.subarray(0, der.length - 20)), code: 'invalid_csr' },
    { what: 'random bytes in PEM armour', csr: pem(randomBytes(300)), code: 'invalid_csr' },
    {
      what: 'base64 garbage in PEM armour',
      csr: '-----BEGIN CERTIFICATE REQUEST-----\n!!!!not base64!!!!\n-----END CERTIFICATE REQUEST-----\n',
      code: 'invalid_csr',
    },
    {
      what: 'empty PEM armour',
      csr: '-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n',
      code: 'invalid_csr',
    },
    {
      what: 'a certificate relabelled as a request',
      csr: pem(Buffer.from(x509.PemConverter.decode(ca.certPem)[0]!)),
      code: 'invalid_csr',
    },
    {
      what: 'a private key inside request armour',
      csr: pem(Buffer.from(x509.PemConverter.decode(keyPem)[0]!)),
      code: 'invalid_csr',
    },
    { what: 'a private key instead of a request', csr: keyPem, code: 'invalid_body' },
    { what: 'no PEM at all', csr: 'hello', code: 'invalid_body' },
    { what: 'huge (over 8192 bytes)', csr: good + ' '.repeat(8200), code: 'invalid_body' },
    {
      what: 'huge structure just under the limit (150 DNS names)',
      csr: await csrWith({
        extensions: [
          new x509.SubjectAlternativeNameExtension(
            Array.from({ length: 150 }, (_, i) => ({
              type: 'dns' as const,
              value: `n${i}.example.com`,
            })),
          ),
        ],
      }),
      code: 'invalid_csr',
    },
  ];
}

/** Requests for names and powers a build's client certificate never has. */
export async function overreachingClientCsrs(): Promise<BadCsr[]> {
  const san = (names: x509.JsonGeneralName[]) => [new x509.SubjectAlternativeNameExtension(names)];
  return [
    {
      what: 'a DNS name',
      csr: await csrWith({ extensions: san([{ type: 'dns', value: 'evil.example.com' }]) }),
      code: 'invalid_csr',
    },
    {
      what: 'an IP address',
      csr: await csrWith({ extensions: san([{ type: 'ip', value: '10.0.0.1' }]) }),
      code: 'invalid_csr',
    },
    {
      what: 'an email name',
      csr: await csrWith({ extensions: san([{ type: 'email', value: 'root@example.com' }]) }),
      code: 'invalid_csr',
    },
    {
      what: 'a URI name',
      csr: await csrWith({
        extensions: san([{ type: 'url', value: 'spiffe://example.com/admin' }]),
      }),
      code: 'invalid_csr',
    },
    {
      what: 'CA powers (basicConstraints CA:true)',
      csr: await csrWith({
        extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
      }),
      code: 'invalid_csr',
    },
    {
      what: 'certificate signing key usage',
      csr: await csrWith({
        extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
      }),
      code: 'invalid_csr',
    },
    {
      what: 'server authentication usage',
      csr: await csrWith({
        extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth])],
      }),
      code: 'invalid_csr',
    },
  ];
}

/** Server requests of machine `machineId` (advertising 127.0.0.1) for what is not its own. */
export async function overreachingServerCsrs(
  machineId: string,
  otherMachineId: string,
): Promise<BadCsr[]> {
  const own = builderServerName(machineId);
  const withNames = (cn: string, names: x509.JsonGeneralName[], extra: x509.Extension[] = []) =>
    csrWith({
      name: `CN=${cn}`,
      extensions: [new x509.SubjectAlternativeNameExtension(names), ...extra],
    });
  return [
    {
      what: "another machine's server name",
      csr: await withNames(own, [{ type: 'dns', value: builderServerName(otherMachineId) }]),
      code: 'invalid_csr',
    },
    {
      what: 'a wildcard over every builder',
      csr: await withNames(own, [{ type: 'dns', value: '*.builders.slipway.internal' }]),
      code: 'invalid_csr',
    },
    {
      what: 'localhost',
      csr: await withNames(own, [{ type: 'dns', value: 'localhost' }]),
      code: 'invalid_csr',
    },
    {
      what: 'an address it does not advertise',
      csr: await withNames(own, [{ type: 'ip', value: '10.1.2.3' }]),
      code: 'invalid_csr',
    },
    {
      what: "another machine's common name",
      csr: await withNames(otherMachineId, [{ type: 'dns', value: own }]),
      code: 'invalid_csr',
    },
    {
      what: 'an email name',
      csr: await withNames(own, [
        { type: 'dns', value: own },
        { type: 'email', value: 'ops@example.com' },
      ]),
      code: 'invalid_csr',
    },
    {
      what: 'CA powers',
      csr: await withNames(
        own,
        [{ type: 'dns', value: own }],
        [new x509.BasicConstraintsExtension(true, undefined, true)],
      ),
      code: 'invalid_csr',
    },
  ];
}
