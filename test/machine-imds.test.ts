// The IMDSv2 client against a loopback server speaking IMDSv2's token protocol: the signed
// identity document and the private address come back, IMDSv1-style requests are never made,
// an expired session token is renewed, and a metadata service that never answers ends in a
// clear error rather than an endless wait.
import test from 'ava';
import { ImdsClient } from '../machine/imds';
import { MachineAgentError } from '../machine/errors';
import { startImdsServer } from './helpers/imds-server';
import { captureLogger } from './helpers/logger';

const document = JSON.stringify({
  accountId: '123456789012',
  instanceId: 'i-0123456789abcdef0',
  region: 'eu-west-1',
  availabilityZone: 'eu-west-1a',
  privateIp: '10.0.1.23',
});
const signature = 'MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwGggCSABIIB\n';

const paths = {
  '/latest/dynamic/instance-identity/document': document,
  '/latest/dynamic/instance-identity/rsa2048': signature,
  '/latest/meta-data/local-ipv4': '10.0.1.23',
};

test('the IMDSv2 client reads the signed identity document and private address with a session token', async (t) => {
  const imds = await startImdsServer(t, paths);
  const client = new ImdsClient({ baseUrl: imds.url, logger: captureLogger().logger });

  const identity = await client.instanceIdentity();
  t.is(identity.document, document);
  t.is(identity.signature, signature.trim());
  t.is(await client.privateIpv4(), '10.0.1.23');

  const puts = imds.requests.filter((r) => r.method === 'PUT');
  t.is(puts.length, 1, 'one session token serves every request');
  t.truthy(puts[0]!.ttl && Number(puts[0]!.ttl) <= 21600);
  t.true(
    imds.requests.filter((r) => r.method === 'GET').every((r) => r.token),
    'no IMDSv1 request (without a token) is ever made',
  );
});

test('the IMDSv2 client renews an expired session token and waits out a metadata service that is starting', async (t) => {
  const imds = await startImdsServer(t, paths);
  const client = new ImdsClient({ baseUrl: imds.url, logger: captureLogger().logger });
  t.is(await client.privateIpv4(), '10.0.1.23');

  imds.expireTokens();
  t.is(await client.privateIpv4(), '10.0.1.23');
  t.is(imds.requests.filter((r) => r.method === 'PUT').length, 2, 'a 401 fetched a new token');

  imds.failNext(3);
  t.is((await client.instanceIdentity()).document, document);
});

test('a metadata service that keeps failing ends in imds_unavailable with the reason', async (t) => {
  const imds = await startImdsServer(t, paths);
  imds.failNext(1_000);
  const client = new ImdsClient({
    baseUrl: imds.url,
    logger: captureLogger().logger,
    deadlineMs: 1500,
  });
  const err = await t.throwsAsync(client.privateIpv4(), { instanceOf: MachineAgentError });
  t.is(err?.code, 'imds_unavailable');
  t.regex(err!.message, /503/);
});

test('a path IMDS does not have fails at once instead of being retried', async (t) => {
  const imds = await startImdsServer(t, paths);
  const client = new ImdsClient({ baseUrl: imds.url, logger: captureLogger().logger });
  const err = await t.throwsAsync(client.get('/latest/meta-data/nothing-here'), {
    instanceOf: MachineAgentError,
  });
  t.regex(err!.message, /404/);
  t.is(imds.requests.filter((r) => r.path === '/latest/meta-data/nothing-here').length, 1);
});
