// A finished build on a scripted fleet, made through the public API the way its real clients
// make it, for dashboard tests: the user creates a connection, a project and a build; the
// scripted cloud-agent syncs with the connection token and reports its apply with a preview
// diff naming what it created; the scripted machine registers with its single-use token and
// reports BuildKit ready; the build gets its builder and finishes.
import type { DesiredFleet } from '../../common/protocol';
import { waitFor } from '../../common/wait';
import { buildCsr, localProject, ScriptedMachine, type TestControlPlane } from './control-plane';

export interface ScriptedBuild {
  connectionId: string;
  machineId: string;
  buildId: string;
  agentId: string;
}

/** A Pulumi-style preview diff of a first converge: the volume and the machine created. */
function previewDiff(fleet: DesiredFleet): string {
  const stack = `urn:pulumi:${fleet.connectionId}::slipway-fleet`;
  const lines = [`Previewing update (${fleet.connectionId}):`, '  pulumi:pulumi:Stack: (same)'];
  for (const v of fleet.volumes) {
    lines.push(
      '    + slipway:local:Volume: (create)',
      `        [urn=${stack}::slipway:local:Volume::${v.id}]`,
      `        sizeGb: ${v.sizeGb}`,
    );
  }
  for (const m of fleet.machines) {
    lines.push(
      '    + slipway:local:Machine: (create)',
      `        [urn=${stack}::slipway:local:Machine::${m.id}]`,
      `        platform         : "${m.platform}"`,
      '        registrationToken: [secret]',
    );
  }
  lines.push('Resources:', `    + ${fleet.volumes.length + fleet.machines.length} to create`);
  return lines.join('\n');
}

export async function scriptedBuild(tcp: TestControlPlane): Promise<ScriptedBuild> {
  const { connection, project, agent } = await localProject(
    tcp,
    {},
    {
      connection: 'local',
      project: 'hello',
    },
  );
  const build = await tcp.user.call('createBuild', {
    body: {
      project: project.name,
      platforms: [{ platform: 'linux/amd64', csr: (await buildCsr()).csr }],
      description: 'examples/hello',
    },
  });
  // The build's request puts a machine and its volume into the desired fleet.
  const fleet = await waitFor(
    async () =>
      (await agent.sync()).lease === 'held' && agent.fleet!.machines.length > 0 && agent.fleet,
    { timeoutMs: 10_000, what: 'a desired fleet with a machine for the build' },
  );
  const machine = fleet.machines[0]!;
  const started = new Date().toISOString();
  agent.observation = {
    observedAt: started,
    machines: [{ id: machine.id, state: 'running', address: '127.0.0.1' }],
    volumes: fleet.volumes.map((v) => ({ id: v.id, state: 'in-use', attachedTo: machine.id })),
  };
  await agent.sync({
    applies: [
      {
        generation: fleet.generation,
        kind: 'converge',
        result: 'succeeded',
        startedAt: started,
        finishedAt: new Date().toISOString(),
        summary: { create: fleet.volumes.length + fleet.machines.length, same: 1 },
        steps: [
          ...fleet.volumes.map((v) => ({ id: v.id, type: 'slipway:local:Volume' })),
          ...fleet.machines.map((m) => ({ id: m.id, type: 'slipway:local:Machine' })),
        ].map(({ id, type }) => ({
          op: 'create',
          urn: `urn:pulumi:${fleet.connectionId}::slipway-fleet::${type}::${id}`,
          type,
          name: id,
        })),
        diff: previewDiff(fleet),
        capacityFailures: [],
        orphansRemoved: [],
      },
    ],
  });

  const scripted = ScriptedMachine.fromFleet(tcp, fleet);
  await scripted.register();
  await waitFor(async () => (await scripted.task(1)).kind === 'buildkit', {
    timeoutMs: 10_000,
    what: 'the BuildKit task of the scripted machine',
  });
  await scripted.report('ready');
  const builder = await tcp.user.call('waitBuilder', {
    params: { buildId: build.id },
    query: { platform: 'linux/amd64', wait: 10 },
  });
  if (builder.state !== 'ready') {
    throw new Error(`the scripted build's builder is ${builder.state}: ${builder.reason}`);
  }
  await tcp.user.call('finishBuild', {
    params: { buildId: build.id },
    body: { result: 'succeeded', buildMs: 1_850 },
  });
  // Registration consumed the machine's token, which changed the fleet; the agent converges
  // that generation too (nothing to create) and the connection is healthy again.
  await agent.sync();
  const latest = agent.fleet!;
  await agent.sync({
    applies: [
      {
        generation: latest.generation,
        kind: 'converge',
        result: 'succeeded',
        startedAt: new Date().toISOString(),
        finishedAt: new Date().toISOString(),
        summary: { same: latest.volumes.length + latest.machines.length + 1 },
        steps: [],
        diff: '',
        capacityFailures: [],
        orphansRemoved: [],
      },
    ],
  });
  return {
    connectionId: connection.id,
    machineId: machine.id,
    buildId: build.id,
    agentId: agent.agentId,
  };
}
