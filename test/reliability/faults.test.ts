// Faults on the whole local stack: the control plane (its own process on a SQLite file), the
// cloud-agent (real Pulumi engine, local provider), machine-agents and their buildkitd, and the
// real `slipway build`. Each is killed with SIGKILL at a point of a build's life; after each, the
// build completes or fails with a clear reason, nothing is left pending without a reason, no
// machine is duplicated, no process is orphaned, no Pulumi lock is left and the database passes
// its integrity check. A machine-agent that goes silent is declared lost in bounded time, its
// build moves to a new machine, and its certificates stop working.
import test, { type ExecutionContext } from 'ava';
import { copyFile, cp as copyDir, mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { stackLayout, machineDir, machinesDir } from '../../automation/layout';
import { machineLogFile } from '../../automation/local/provider-impl';
import { processesUnder } from '../../automation/local/processes';
import type { Build } from '../../common/protocol';
import { waitFor } from '../../common/wait';
import { runCli, type CliResult } from '../helpers/cli';
import {
  agentCaughtUp,
  cleanUpLocalFleet,
  startAgentProcess,
  type AgentProcess,
} from '../helpers/cloud-agent';
import {
  databaseSnapshot,
  integrityCheck,
  startControlPlaneProcess,
  type ControlPlaneProcess,
} from '../helpers/cp-process';
import { ledger } from '../helpers/ledger';
import { buildctl } from '../helpers/mtls-buildkitd';
import { tempDir } from '../helpers/tmp';

const example = path.join(__dirname, '..', '..', 'examples', 'hello');
const lostAfterSeconds = 15;

interface Stack {
  cp: ControlPlaneProcess;
  dir: string;
  dataDir: string;
  connectionId: string;
  connectionToken: string;
  agents: AgentProcess[];
  /** The build context: examples/hello with busybox. */
  context: string;
  agent(): AgentProcess;
  startAgent(): void;
  build(project: string, name: string, extra?: string[]): Promise<CliResult>;
}

async function stack(t: ExecutionContext, projects: string[]): Promise<Stack> {
  const cp = await startControlPlaneProcess(t);
  const dir = await tempDir(t, 'faults');
  const dataDir = path.join(dir, 'agent');
  const created = await cp.user.call('createConnection', {
    body: {
      name: 'local',
      provider: 'local',
      settings: {
        platforms: ['linux/amd64'],
        machineLostAfterSeconds: lostAfterSeconds,
        acquireDeadlineSeconds: 600,
      },
    },
  });
  for (const name of projects) {
    await cp.user.call('createProject', { body: { name, connection: created.connection.id } });
  }
  const agents: AgentProcess[] = [];
  cleanUpLocalFleet(t, dataDir, () => agents);
  const context = path.join(dir, 'hello');
  await copyDir(example, context, { recursive: true });
  await copyFile('/bin/busybox', path.join(context, 'busybox'));
  const s: Stack = {
    cp,
    dir,
    dataDir,
    connectionId: created.connection.id,
    connectionToken: created.token,
    agents,
    context,
    agent: () => agents[agents.length - 1]!,
    startAgent: () =>
      void agents.push(
        startAgentProcess({ apiUrl: cp.url, connectionToken: created.token, dataDir }),
      ),
    build: (project, name, extra = []) =>
      runCli(
        [
          'build',
          context,
          '--progress',
          'plain',
          '--project',
          project,
          '--metadata-file',
          path.join(dir, `${name}.json`),
          ...extra,
        ],
        {
          env: {
            SLIPWAY_API_URL: cp.url,
            SLIPWAY_TOKEN: cp.userToken,
            SLIPWAY_CONFIG: path.join(dir, 'cli-config.json'),
          },
          timeoutMs: 600_000,
        },
      ),
  };
  s.startAgent();
  return s;
}

/** The build of a CLI run, from the metadata file it wrote. */
async function buildOf(s: Stack, name: string): Promise<Build> {
  return JSON.parse(await readFile(path.join(s.dir, `${name}.json`), 'utf8')).build as Build;
}

/** The newest build of a project, once the CLI has created it. */
async function newestBuild(s: Stack, project: string, after: Set<string>): Promise<Build> {
  return waitFor(
    async () => {
      const { builds } = await s.cp.user.call('listBuilds', { query: { project } });
      return builds.find((b) => !after.has(b.id));
    },
    { timeoutMs: 60_000, what: `the CLI to create a build of ${project}` },
  );
}

async function buildIds(s: Stack): Promise<Set<string>> {
  const { builds } = await s.cp.user.call('listBuilds', {});
  return new Set(builds.map((b) => b.id));
}

function killAgent(agent: AgentProcess): Promise<unknown> {
  agent.child.kill('SIGKILL');
  return agent.exited;
}

/** After every fault: what must always hold, whatever the fault was. */
async function invariants(t: ExecutionContext, s: Stack, after: string): Promise<void> {
  await agentCaughtUp(s.cp.user, s.connectionId, 240_000);
  const { machines } = await s.cp.user.call('listMachines', {});
  const live = machines.filter((m) => m.status !== 'deleted');
  // No duplicate: at most one live machine per project.
  const perProject = new Map<string, number>();
  for (const m of live) {
    if (m.projectId) perProject.set(m.projectId, (perProject.get(m.projectId) ?? 0) + 1);
  }
  t.true(
    [...perProject.values()].every((n) => n === 1),
    `${after}: one machine per project (${JSON.stringify([...perProject])})`,
  );
  // No orphan: every machine directory with processes belongs to a live machine.
  const dirs = existsSync(machinesDir(s.dataDir)) ? readdirSync(machinesDir(s.dataDir)) : [];
  const withProcesses = dirs.filter((id) => processesUnder(machineDir(s.dataDir, id)).length > 0);
  const liveIds = new Set(live.map((m) => m.id));
  t.deepEqual(
    withProcesses.filter((id) => !liveIds.has(id)),
    [],
    `${after}: no process left of a machine that is gone`,
  );
  // No stale lock once the agent caught up.
  const locks = path.join(stackLayout(s.dataDir, s.connectionId).backendDir, '.pulumi', 'locks');
  const lockFiles = existsSync(locks)
    ? readdirSync(locks, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
    : [];
  t.is(lockFiles.length, 0, `${after}: no Pulumi lock left`);
  // Nothing pending, and every finished build says why it ended the way it did.
  const { builds } = await s.cp.user.call('listBuilds', {});
  for (const b of builds) {
    t.not(b.status, 'pending', `${after}: build ${b.id} is not left pending`);
    for (const r of b.builders) t.truthy(r.reason, `${after}: builder of ${b.id} has a reason`);
    if (b.status === 'failed') t.truthy(b.error, `${after}: failed build ${b.id} says why`);
  }
  t.is(await integrityCheck(s.cp.dataDir), 'ok', `${after}: database integrity`);
}

test.serial(
  'kill -9 of the control plane, the cloud-agent, a buildkitd and a machine-agent: every build completes or fails loudly',
  async (t) => {
    const book = ledger(t);
    const s = await stack(t, ['alpha', 'beta', 'gamma']);

    // 1. The control plane killed while the CLI long-polls for a cold builder the agent is making.
    let seen = await buildIds(s);
    const alpha1 = s.build('alpha', 'alpha1');
    const b1 = await newestBuild(s, 'alpha', seen);
    await waitFor(
      async () => {
        const b = await s.cp.user.call('getBuild', { params: { buildId: b1.id } });
        return b.builders[0]!.phases.pickedUpAt !== null;
      },
      { timeoutMs: 120_000, what: 'the agent to pick the request up' },
    );
    await s.cp.kill();
    await s.cp.start();
    const r1 = await alpha1;
    t.is(r1.code, 0, r1.stderr);
    t.regex(r1.stderr, /control plane unreachable, retrying|ready \(cold path/);
    await invariants(t, s, 'control plane killed');
    book.record(
      'fault',
      'control plane SIGKILLed while the CLI long-polled for a cold builder the agent was making',
      'restarted on the same SQLite file; the CLI retried, the build completed; db integrity ok',
    );

    // 1b. The control plane killed while a build runs on its builder, and still down when the
    //     build ends: the CLI's heartbeats fail, its report of the result is retried.
    seen = await buildIds(s);
    const out = path.join(s.dir, 'alpha-out');
    const alphaCp = s.build('alpha', 'alpha-cp', [
      '--no-cache',
      '--output',
      `type=local,dest=${out}`,
    ]);
    const bCp = await newestBuild(s, 'alpha', seen);
    // Once the control plane has answered the CLI's long-poll, the CLI needs it only to report.
    await waitFor(
      async () =>
        (await s.cp.user.call('getBuild', { params: { buildId: bCp.id } })).builders[0]!.phases
          .answeredAt,
      // The build takes a second or less from there: the kill must come before its report.
      { timeoutMs: 120_000, intervalMs: 10, maxIntervalMs: 10, what: 'the CLI to get its builder' },
    );
    await s.cp.kill();
    // While it is down its port refuses every request, and shows when the CLI tried to report.
    let cliEnded = false;
    void alphaCp.then(() => (cliEnded = true));
    let reportTried = false;
    const sockets = new Set<net.Socket>();
    const down = net.createServer((socket) => {
      sockets.add(socket);
      socket.once('data', (d: Buffer) => {
        if (d.toString('latin1').startsWith(`POST /v1/builds/${bCp.id}/finish `)) {
          reportTried = true;
        }
        socket.destroy();
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) =>
      down.listen(Number(new URL(s.cp.url).port), '127.0.0.1', resolve),
    );
    await waitFor(() => cliEnded || reportTried, {
      timeoutMs: 120_000,
      intervalMs: 50,
      what: 'the CLI to build and try to report its result while the control plane is down',
    });
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => down.close(() => resolve()));
    if (!reportTried) {
      const early = await alphaCp;
      t.fail(`the CLI ended (${early.code}) without reporting to the port:\n${early.stderr}`);
    }
    t.true(existsSync(path.join(out, 'app', 'GREETING.txt')), 'the build had exported its result');
    await s.cp.start();
    const rCp = await alphaCp;
    t.is(rCp.code, 0, rCp.stderr);
    const bCpDone = await s.cp.user.call('getBuild', { params: { buildId: bCp.id } });
    t.is(bCpDone.status, 'succeeded', 'the result reported after the restart was kept');
    await invariants(t, s, 'control plane killed during a build');
    book.record(
      'fault',
      'control plane SIGKILLed while a build ran on its builder, still down when the build ended',
      'the CLI retried its report of the result until the restart; the build is recorded succeeded, not failed for lack of heartbeats',
    );

    // 2. The agent killed during its idle long-poll; a build for a new project comes meanwhile.
    await killAgent(s.agent());
    seen = await buildIds(s);
    const beta1 = s.build('beta', 'beta1');
    const b2 = await newestBuild(s, 'beta', seen);
    const waiting = await s.cp.user.call('waitBuilder', {
      params: { buildId: b2.id },
      query: { platform: 'linux/amd64', wait: 0 },
    });
    t.is(waiting.state, 'pending');
    t.truthy(waiting.reason, 'a pending builder always says why');
    s.startAgent();
    const r2 = await beta1;
    t.is(r2.code, 0, r2.stderr);
    await invariants(t, s, 'agent killed in its long-poll');
    book.record(
      'fault',
      'cloud-agent SIGKILLed during its long-poll; a build for a new project arrived while it was down',
      `pending with a reason ("${waiting.reason}"); restarted, the agent made the machine and the build completed`,
    );

    // 3. The agent killed during an update that is creating the machine.
    seen = await buildIds(s);
    const machinesBefore = new Set(
      existsSync(machinesDir(s.dataDir)) ? readdirSync(machinesDir(s.dataDir)) : [],
    );
    const gamma1 = s.build('gamma', 'gamma1');
    await newestBuild(s, 'gamma', seen);
    const locks = path.join(stackLayout(s.dataDir, s.connectionId).backendDir, '.pulumi', 'locks');
    // The window lasts a second or so: watch it closely.
    await waitFor(
      () =>
        readdirSync(machinesDir(s.dataDir)).some((id) => !machinesBefore.has(id)) &&
        existsSync(locks) &&
        readdirSync(locks, { recursive: true, withFileTypes: true }).some((e) => e.isFile()),
      {
        timeoutMs: 180_000,
        intervalMs: 5,
        maxIntervalMs: 5,
        what: 'the update to start the machine',
      },
    );
    await killAgent(s.agent());
    s.startAgent();
    const r3 = await gamma1;
    t.is(r3.code, 0, r3.stderr);
    await invariants(t, s, 'agent killed mid-update');
    const audit = await s.cp.user.call('listAudit', { params: { connectionId: s.connectionId } });
    book.record(
      'fault',
      'cloud-agent SIGKILLed during a Pulumi update while it created a machine (stack locked)',
      `restarted: lock cleared, converged again (${audit.records.length} audit records), no duplicate machine or orphan; the build completed`,
    );

    // 4. buildkitd killed between builds: the machine-agent restarts it and the next build runs.
    const alpha = (await buildOf(s, 'alpha1')).builders[0]!.machineId!;
    const pidFile = path.join(machineDir(s.dataDir, alpha), 'buildkit', 'buildkitd.pid');
    const killBuildkitd = async () => {
      const pid = Number((await readFile(pidFile, 'utf8')).trim());
      process.kill(pid, 'SIGKILL');
      return pid;
    };
    const firstPid = await killBuildkitd();
    const r4 = await s.build('alpha', 'alpha2');
    t.is(r4.code, 0, r4.stderr);
    t.is((await buildOf(s, 'alpha2')).builders[0]!.machineId, alpha, 'on the same machine');
    t.not(Number((await readFile(pidFile, 'utf8')).trim()), firstPid, 'a new buildkitd');
    book.record(
      'fault',
      'buildkitd SIGKILLed between two builds of its project',
      'the machine-agent restarted it; the next build ran on the same machine',
    );

    // 5. buildkitd killed while a build runs a step on it: the CLI fails at once, loudly, and
    //    the build is recorded failed; the next build runs on the restarted buildkitd.
    // A step that sleeps a number of seconds nobody else would choose: its process is found by it.
    const seconds = String(3000 + Math.floor(Math.random() * 999));
    const marker = `/bin/busybox\0sleep\0${seconds}\0`;
    await writeFile(
      path.join(s.context, 'Dockerfile.slow'),
      `FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sleep", "${seconds}"]\n`,
    );
    seen = await buildIds(s);
    const alpha3 = s.build('alpha', 'alpha3', ['-f', path.join(s.context, 'Dockerfile.slow')]);
    const b5 = await newestBuild(s, 'alpha', seen);
    const step = await waitFor(() => stepProcess(marker), {
      timeoutMs: 120_000,
      intervalMs: 50,
      what: 'the slow step to run on the builder',
    });
    // The step's process must not outlive the test, whatever buildkitd leaves behind.
    t.teardown(() => {
      if (cmdline(step).includes(marker)) process.kill(Number(step), 'SIGKILL');
    });
    const stepAt = performance.now();
    await killBuildkitd();
    const r5 = await alpha3;
    const failedInMs = performance.now() - stepAt;
    const b5done = await s.cp.user.call('getBuild', { params: { buildId: b5.id } });
    t.is(r5.code, 1, r5.stderr);
    t.regex(r5.stderr, /build failed/, 'the CLI says the build failed');
    t.true(failedInMs < 60_000, `the CLI ended ${Math.round(failedInMs)} ms after the kill`);
    t.is(b5done.status, 'failed');
    t.truthy(b5done.error);
    const r5b = await s.build('alpha', 'alpha4');
    t.is(r5b.code, 0, r5b.stderr);
    // The restarted buildkitd's machine-agent ended the orphaned step and unmounted its rootfs.
    t.is(stepProcess(marker), undefined, 'the step of the dead buildkitd no longer runs');
    const volumes = path.join(s.dataDir, 'volumes') + path.sep;
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((m) => m.startsWith(volumes));
    t.deepEqual(mounts, [], 'no container rootfs left mounted on the cache volume');
    await invariants(t, s, 'buildkitd killed mid-build');
    book.record(
      'fault',
      'buildkitd SIGKILLed while a build ran a step on it',
      `the CLI failed ${(failedInMs / 1000).toFixed(1)} s later with "${lastLine(r5.stderr)}"; the build recorded failed ("${b5done.error}"); the orphaned step ended and its rootfs unmounted; the next build ran`,
    );

    // 6. The machine-agent killed outright (its buildkitd keeps serving): it sends no more health
    //    reports, is declared lost and removed, its certificates stop working, the next build moves on.
    const old = await buildOf(s, 'alpha4');
    const oldBuilder = old.builders[0]!;
    // The machine-agent is the root of the machine's processes; its buildkitd is its child.
    const procs = processesUnder(machineDir(s.dataDir, alpha));
    const pids = new Set(procs.map((p) => p.pid));
    const agentPid = Number(procs.find((p) => !pids.has(p.ppid))?.pid);
    t.true(agentPid > 0, 'the machine-agent process was found');
    process.kill(agentPid, 'SIGKILL');
    const killedAt = performance.now();
    await waitFor(
      async () => {
        const { machines } = await s.cp.user.call('listMachines', {});
        return machines.find(
          (m) => m.id === alpha && ['lost', 'deleting', 'deleted'].includes(m.status),
        );
      },
      { timeoutMs: (lostAfterSeconds + 60) * 1000, what: `machine ${alpha} to be declared lost` },
    );
    const lostAfterMs = performance.now() - killedAt;
    // Its certificates open nothing any more: the lost machine is removed with its buildkitd.
    await waitFor(() => processesUnder(machineDir(s.dataDir, alpha)).length === 0, {
      timeoutMs: 120_000,
      what: `the lost machine ${alpha} to be removed`,
    });
    const certDir = path.join(s.dir, 'old-cert');
    await mkdir(certDir, { recursive: true });
    await writeFile(path.join(certDir, 'ca.pem'), oldBuilder.caCertificate ?? '');
    await writeFile(path.join(certDir, 'cert.pem'), oldBuilder.clientCertificate ?? '');
    const refused = await buildctl(
      {
        address: oldBuilder.endpoint!,
        serverName: oldBuilder.serverName!,
        caFile: path.join(certDir, 'ca.pem'),
      },
      { certFile: path.join(certDir, 'cert.pem') },
      ['debug', 'workers'],
    );
    t.not(refused.code, 0, refused.output);
    // The project's next build gets a new machine.
    const r6 = await s.build('alpha', 'alpha5');
    t.is(r6.code, 0, r6.stderr);
    const moved = (await buildOf(s, 'alpha5')).builders[0]!;
    t.not(moved.machineId, alpha, 'the build ran on a new machine');
    await invariants(t, s, 'machine-agent killed');
    book.record(
      'lost machine',
      'machine-agent SIGKILLed (its buildkitd left serving): no more health reports',
      `declared lost after ${Math.round(lostAfterMs / 1000)} s (limit ${lostAfterSeconds} s), removed with its buildkitd: the old build certificate opens nothing; the next build ran on a new machine`,
    );

    // 7. The whole machine gone at once (machine-agent and buildkitd), and a build requested
    //    right away, while the control plane still counts the builder ready: the build runs on a
    //    new machine or fails at once with a reason; it never hangs.
    const gone = moved.machineId!;
    const goneProcs = processesUnder(machineDir(s.dataDir, gone));
    for (const p of goneProcs) process.kill(p.pid, 'SIGKILL');
    const requestedAt = performance.now();
    const r7 = await s.build('alpha', 'alpha6');
    const r7Ms = performance.now() - requestedAt;
    const b7 = await buildOf(s, 'alpha6').catch(() => undefined);
    if (r7.code === 0) {
      t.not(b7?.builders[0]!.machineId, gone, 'it ran on a new machine');
    } else {
      t.is(r7.code, 1, r7.stderr);
      t.regex(
        r7.stderr,
        /build failed \(exit code 1\): the linux\/amd64 builder .* does not answer/,
        r7.stderr,
      );
    }
    // Either way the machine is declared lost and the project's next build gets a new one.
    await waitFor(
      async () => {
        const { machines } = await s.cp.user.call('listMachines', {});
        return machines.find(
          (m) => m.id === gone && ['lost', 'deleting', 'deleted'].includes(m.status),
        );
      },
      { timeoutMs: (lostAfterSeconds + 60) * 1000, what: `machine ${gone} to be declared lost` },
    );
    const r7b = await s.build('alpha', 'alpha7');
    t.is(r7b.code, 0, r7b.stderr);
    t.not((await buildOf(s, 'alpha7')).builders[0]!.machineId, gone);
    await invariants(t, s, 'machine killed whole');
    book.record(
      'lost machine',
      'a whole machine SIGKILLed (machine-agent and buildkitd) and a build requested at once, while its builder still counted as ready',
      r7.code === 0
        ? `the build ran on a new machine after ${(r7Ms / 1000).toFixed(1)} s; the machine declared lost`
        : `the build failed after ${(r7Ms / 1000).toFixed(1)} s with "${lastLine(r7.stderr)}"; the machine declared lost and the next build ran on a new machine`,
    );

    // Nothing secret in the logs of any component, the audit records or the database dump.
    const secrets = [s.cp.userToken, s.connectionToken];
    const texts = [
      s.cp.log(),
      s.cp.stderr(),
      ...s.agents.map((a) => a.output()),
      JSON.stringify(audit.records),
      JSON.stringify(
        (await s.cp.user.call('listAudit', { params: { connectionId: s.connectionId } })).records,
      ),
      await databaseSnapshot(s.cp.dataDir),
    ];
    for (const id of readdirSync(machinesDir(s.dataDir))) {
      const log = path.join(machineDir(s.dataDir, id), machineLogFile);
      if (existsSync(log)) texts.push(await readFile(log, 'utf8'));
      const key = path.join(machineDir(s.dataDir, id), 'server-key.pem');
      if (existsSync(key)) secrets.push((await readFile(key, 'utf8')).split('\n')[1]!);
      const state = path.join(machineDir(s.dataDir, id), 'machine.json');
      if (existsSync(state)) {
        const token = /swm_[A-Za-z0-9_-]{43}/.exec(await readFile(state, 'utf8'))?.[0];
        if (token) secrets.push(token);
      }
    }
    // The stack's state, its history and backups: outputs and inputs as Pulumi keeps them.
    const backend = stackLayout(s.dataDir, s.connectionId).backendDir;
    const stateFiles = readdirSync(backend, { recursive: true, withFileTypes: true }).filter((e) =>
      e.isFile(),
    );
    for (const f of stateFiles) texts.push(await readFile(path.join(f.parentPath, f.name), 'utf8'));
    const leaks = secrets.filter((x) => texts.some((text) => text.includes(x)));
    t.notRegex(
      texts.join('\n'),
      /sw[ucmr]_[A-Za-z0-9_-]{43}/,
      'no token of any kind in plain text',
    );
    t.deepEqual(leaks, [], 'no token or private key in logs, audit records or the database');
    t.notRegex(texts.join('\n'), /-----BEGIN [A-Z ]*PRIVATE KEY-----/);
    book.record(
      'secret',
      `logs of the control plane, ${s.agents.length} cloud-agent runs and every machine-agent; audit records; every database row; ${stateFiles.length} files of Pulumi stack state, history and backups`,
      `none of ${secrets.length} known tokens and private keys appears; no token of any kind, no PEM private key at all`,
    );
  },
);

function cmdline(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1');
  } catch {
    return ''; // it ended meanwhile
  }
}

/** The process whose command line holds `marker` (a build step in its container), if any. */
function stepProcess(marker: string): string | undefined {
  return readdirSync('/proc').find((pid) => /^\d+$/.test(pid) && cmdline(pid).includes(marker));
}

function lastLine(text: string): string {
  return (
    text
      .trim()
      .split('\n')
      .filter((l) => /error|failed/i.test(l))
      .pop() ?? ''
  ).slice(0, 120);
}
