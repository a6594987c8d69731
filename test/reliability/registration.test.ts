// A machine-agent that loses the answer to its registration: killed with SIGKILL after the
// control plane accepted it and before it stored its machine token, or cut off from the answer
// by the network. Started again (as systemd does), it registers again with the same key and
// serves builds; the registration token stays single-use for anyone else.
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ApiError } from '../../common/api';
import { freePort } from '../../common/net';
import { waitFor } from '../../common/wait';
import {
  buildCsr,
  pendingBuildsOnNewMachines,
  startTestControlPlane,
} from '../helpers/control-plane';
import { startFaultProxy } from '../helpers/fault-proxy';
import { ledger } from '../helpers/ledger';
import {
  agentEnv,
  buildClient,
  startAgentChild,
  waitForBuilder,
  type ChildAgent,
} from '../helpers/machine-agent';
import { buildctl } from '../helpers/mtls-buildkitd';
import { tempDir } from '../helpers/tmp';

test('a machine-agent that lost the answer to its registration registers again; nobody else can', async (t) => {
  const book = ledger(t);
  const tcp = await startTestControlPlane(t);
  const work = await tempDir(t, 'registration');
  const { agent, builds } = await pendingBuildsOnNewMachines(tcp, ['killed', 'cut']);
  const [killedMachine, cutMachine] = builds.map((b) => b.machine);

  // Fault 1: SIGKILL once the control plane accepted the registration, before the answer.
  let victim: ChildAgent | undefined;
  const killing = await startFaultProxy(t, tcp.url, async (x) => {
    if (x.path !== '/v1/machine/register' || x.status !== 201 || !victim) return 'pass';
    const dying = victim;
    victim = undefined;
    dying.child.kill('SIGKILL');
    await dying.exited;
    return 'cut';
  });
  const settings = {
    apiUrl: killing.url,
    machineId: killedMachine!.id,
    registrationToken: killedMachine!.registrationToken!,
    stateDir: path.join(work, 'machines', killedMachine!.id),
    volumesDir: path.join(work, 'volumes'),
    buildkitPort: await freePort(),
  };
  const first = await startAgentChild(t, agentEnv(settings), path.join(work, 'killed-1.log'));
  victim = first;
  t.is((await first.exited).signal, 'SIGKILL');
  const row = await tcp.cp.db('machines').where({ id: killedMachine!.id }).first();
  t.truthy(row.registered_at, 'the control plane had accepted the registration');
  t.false(existsSync(path.join(settings.stateDir, 'machine.json')), 'the token was never stored');

  const second = await startAgentChild(t, agentEnv(settings), path.join(work, 'killed-2.log'));
  await agent.applyFleet();
  const ready = await waitForBuilder(tcp.user, builds[0]!.build.id).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await second.log()}`);
  });
  t.is(ready.state, 'ready', ready.reason);
  t.regex(await second.log(), /"msg":"registered"/);
  const { target, client } = await buildClient(
    path.join(work, 'cli-killed'),
    builds[0]!.keys,
    ready,
  );
  const workers = await buildctl(target, client, ['debug', 'workers']);
  t.is(workers.code, 0, workers.output);
  book.record(
    'fault',
    'machine-agent SIGKILLed after the control plane accepted its registration, before it stored the token',
    'restarted, it registered again with the same key; its builder served the build over mTLS',
  );

  // The token stays single-use for anyone else: another key is refused, and so is the same
  // registration replayed once the machine has used its token.
  const register = (csr: string) =>
    tcp.anonymous
      .call('machineRegister', {
        body: {
          machineId: killedMachine!.id,
          registrationToken: killedMachine!.registrationToken!,
          platform: 'linux/amd64',
          endpoint: { host: '127.0.0.1', port: settings.buildkitPort },
          csr,
          agentVersion: 'thief',
        },
      })
      .catch((err: unknown) => err);
  const otherKey = await register((await buildCsr()).csr);
  t.true(otherKey instanceof ApiError && otherKey.code === 'already_registered', String(otherKey));
  const storedCsr = String(
    (await tcp.cp.db('machines').where({ id: killedMachine!.id }).first('csr')).csr,
  );
  const replay = await register(storedCsr);
  t.true(replay instanceof ApiError && replay.code === 'already_registered', String(replay));
  const serverKey = await readFile(path.join(settings.stateDir, 'server-key.pem'), 'utf8');
  t.false(
    (await second.log()).includes(serverKey.split('\n')[1]!),
    'the server key is not in the log',
  );
  book.record(
    'bad input',
    'registration token reused with another key, and the first registration replayed after use',
    '409 already_registered both times',
  );

  // Fault 2: the answer is lost on the way (the connection cut); the agent itself lives on.
  let cuts = 0;
  const cutting = await startFaultProxy(t, tcp.url, (x) =>
    x.path === '/v1/machine/register' && x.status === 201 && cuts++ === 0 ? 'cut' : 'pass',
  );
  const cutSettings = {
    ...settings,
    apiUrl: cutting.url,
    machineId: cutMachine!.id,
    registrationToken: cutMachine!.registrationToken!,
    stateDir: path.join(work, 'machines', cutMachine!.id),
    buildkitPort: await freePort(),
  };
  const retried = await startAgentChild(t, agentEnv(cutSettings), path.join(work, 'cut.log'));
  await waitFor(() => existsSync(path.join(cutSettings.stateDir, 'machine.json')), {
    timeoutMs: 60_000,
    what: 'the machine to store its token after the retry',
  }).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await retried.log()}`);
  });
  await agent.applyFleet();
  const cutReady = await waitForBuilder(tcp.user, builds[1]!.build.id);
  t.is(cutReady.state, 'ready', cutReady.reason);
  t.deepEqual(
    cutting.exchanges.filter((x) => x.path === '/v1/machine/register').map((x) => x.verdict),
    ['cut', 'pass'],
  );
  book.record(
    'fault',
    "the answer to a machine's registration lost on the way (connection cut)",
    'the agent retried, registered with the same key and became ready',
  );
});
