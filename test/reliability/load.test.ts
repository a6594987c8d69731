// Load on the control plane in its own process: 200 builds across 50 projects and 5 connections,
// each with its CLI long-polling for its builder, while 50 machines register, long-poll their
// task and report; every long-poll ends ready, every build ends, and the API keeps answering.
// Then the real cloud-agent (Pulumi, local provider) gets a burst of requests, and more during
// its update: it batches them into a few updates instead of one per request.
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { stackLayout } from '../../automation/layout';
import type { ApiClient } from '../../common/api';
import type { Build, Builder } from '../../common/protocol';
import { waitFor } from '../../common/wait';
import {
  agentCaughtUp,
  cleanUpLocalFleet,
  startAgentProcess,
  type AgentProcess,
} from '../helpers/cloud-agent';
import { buildCsr, ScriptedAgent, ScriptedMachine } from '../helpers/control-plane';
import { integrityCheck, startControlPlaneProcess } from '../helpers/cp-process';
import { ledger } from '../helpers/ledger';
import { tempDir } from '../helpers/tmp';

/** The CLI's long-poll: until the builder is ready or failed; counts the polls it took. */
async function longPoll(
  api: ApiClient,
  buildId: string,
): Promise<{ builder: Builder; polls: number }> {
  for (let polls = 1; ; polls++) {
    const builder = await api.call('waitBuilder', {
      params: { buildId },
      query: { platform: 'linux/amd64', wait: 25 },
    });
    if (builder.state !== 'pending') return { builder, polls };
    if (!builder.reason) throw new Error(`build ${buildId} pending without a reason`);
  }
}

test.serial(
  '200 CLI long-polls and 50 machines on 5 connections: every request ends ready and the API keeps answering',
  async (t) => {
    const book = ledger(t);
    const cp = await startControlPlaneProcess(t);
    const connections = 5;
    const projectsPer = 10;
    const buildsPer = 4;
    const agents: ScriptedAgent[] = [];
    const projects: string[] = [];
    for (let c = 0; c < connections; c++) {
      const created = await cp.user.call('createConnection', {
        body: {
          name: `conn${c}`,
          provider: 'local',
          settings: { platforms: ['linux/amd64'], maxMachines: projectsPer },
        },
      });
      agents.push(new ScriptedAgent(cp.client(created.token)));
      for (let p = 0; p < projectsPer; p++) {
        const name = `c${c}p${p}`;
        await cp.user.call('createProject', { body: { name, connection: created.connection.id } });
        projects.push(name);
      }
    }

    // Meanwhile, a probe of the API every 200 ms: the slowest answer is recorded.
    const probes: number[] = [];
    let probing = true;
    const prober = (async () => {
      while (probing) {
        const started = performance.now();
        await cp.user.call('getOrganization', {});
        probes.push(performance.now() - started);
        await delay(200);
      }
    })();

    // 200 builds requested at once, each by its own CLI, which then long-polls.
    const started = performance.now();
    const requests = projects.flatMap((project) =>
      Array.from({ length: buildsPer }, async () => {
        const cli = cp.client(cp.userToken);
        const { csr } = await buildCsr();
        const build = await cli.call('createBuild', {
          body: { project, platforms: [{ platform: 'linux/amd64', csr }] },
        });
        return { cli, build, polled: longPoll(cli, build.id) };
      }),
    );
    const builds = await Promise.all(requests);
    t.is(builds.length, 200);

    // Each connection's agent gets its fleet; 50 machines register at once and long-poll a task.
    await Promise.all(agents.map((a) => a.sync()));
    const machines = agents.flatMap((a) =>
      a.fleet!.machines.map((m) => new ScriptedMachine(cp, m.id, m.registrationToken!)),
    );
    t.is(machines.length, connections * projectsPer, 'one machine per project, not per build');
    await Promise.all(machines.map((m) => m.register()));
    const tasks = machines.map(async (m) => {
      for (;;) {
        const task = await m.task(25);
        if (task.kind === 'buildkit') return task;
      }
    });
    await Promise.all(agents.map((a) => a.applyFleet()));
    await Promise.all(tasks);
    await Promise.all(machines.map((m) => m.report('ready')));

    const answered = await Promise.all(builds.map((b) => b.polled));
    const acquireMs = performance.now() - started;
    t.true(
      answered.every((a) => a.builder.state === 'ready'),
      'every long-poll ended with a ready builder',
    );
    // All builds of a project share its one builder.
    const perProject = new Map<string, Set<string>>();
    answered.forEach((a, i) => {
      const p = builds[i]!.build.projectId;
      perProject.set(p, (perProject.get(p) ?? new Set()).add(a.builder.machineId!));
    });
    t.true(
      [...perProject.values()].every((s) => s.size === 1),
      'one builder per project',
    );

    const finished = await Promise.all(
      builds.map(({ cli, build }) =>
        cli.call('finishBuild', { params: { buildId: build.id }, body: { result: 'succeeded' } }),
      ),
    );
    probing = false;
    await prober;
    t.true(finished.every((b: Build) => b.status === 'succeeded'));
    const slowest = Math.max(...probes);
    t.true(slowest < 5000, `the API kept answering: slowest probe ${Math.round(slowest)} ms`);
    const metrics = await (await fetch(`${cp.url}/metrics`)).text();
    t.regex(metrics, /slipway_pending_builders 0/);
    t.is(cp.stderr(), '', 'nothing on the server stderr');
    t.is(await integrityCheck(cp.dataDir), 'ok');
    const polls = answered.map((a) => a.polls);
    book.record(
      'load',
      '200 builds across 50 projects and 5 connections requested at once, 200 CLI long-polls; 50 machines registering and long-polling their task',
      `all 200 ready in ${(acquireMs / 1000).toFixed(1)} s (at most ${Math.max(...polls)} polls each), all finished; ${probes.length} API probes meanwhile, slowest ${Math.round(slowest)} ms; db integrity ok`,
    );
  },
);

test.serial(
  'the real cloud-agent batches a burst of requests, and those arriving during an update, into few updates',
  async (t) => {
    const book = ledger(t);
    const cp = await startControlPlaneProcess(t);
    const created = await cp.user.call('createConnection', {
      body: { name: 'local', provider: 'local', settings: { platforms: ['linux/amd64'] } },
    });
    const names = ['one', 'two', 'three', 'four', 'five'];
    for (const name of names) {
      await cp.user.call('createProject', { body: { name, connection: created.connection.id } });
    }
    const dataDir = path.join(await tempDir(t, 'load-agent'), 'agent');
    const agents: AgentProcess[] = [];
    cleanUpLocalFleet(t, dataDir, () => agents);
    agents.push(startAgentProcess({ apiUrl: cp.url, connectionToken: created.token, dataDir }));
    const request = async (project: string) => {
      const { csr } = await buildCsr();
      return cp.user.call('createBuild', {
        body: { project, platforms: [{ platform: 'linux/amd64', csr }] },
      });
    };

    // One request; while its update runs (the stack locked), four more arrive.
    const first = await request(names[0]!);
    const locks = path.join(
      stackLayout(dataDir, created.connection.id).backendDir,
      '.pulumi',
      'locks',
    );
    await waitFor(
      () =>
        existsSync(locks) &&
        readdirSync(locks, { recursive: true, withFileTypes: true }).some((e) => e.isFile()),
      // The update holds the lock for well under a second: watch it closely.
      { timeoutMs: 180_000, intervalMs: 5, maxIntervalMs: 5, what: 'the first update to start' },
    );
    const rest = await Promise.all(names.slice(1).map(request));
    for (const b of [first, ...rest]) {
      const { builder } = await longPoll(cp.user, b.id);
      t.is(builder.state, 'ready', builder.reason);
      await cp.user.call('finishBuild', {
        params: { buildId: b.id },
        body: { result: 'succeeded' },
      });
    }
    await agentCaughtUp(cp.user, created.connection.id);
    const { records } = await cp.user.call('listAudit', {
      params: { connectionId: created.connection.id },
    });
    // A converge whose preview showed no change ran no update at all.
    const updates = records.filter(
      (r) =>
        r.kind === 'converge' &&
        Object.entries(r.summary).some(([op, n]) => op !== 'same' && (n ?? 0) > 0),
    );
    t.true(
      updates.length <= 3,
      `${names.length} requests took ${updates.length} updates: ${updates.map((u) => JSON.stringify(u.summary)).join(' | ')}`,
    );
    book.record(
      'load',
      `${names.length} builds for new projects: one, then four while its Pulumi update ran (real agent, local provider)`,
      `${updates.length} Pulumi updates in all (${updates.map((u) => JSON.stringify(u.summary)).join(', ')}), ${records.length - updates.length} passes with nothing to change; all builders ready, all builds finished`,
    );
  },
);
