// `npm run bench -- build`: is a build through Slipway as fast as on a BuildKit you run yourself?
// The same Dockerfiles, the same buildctl command line (made by the CLI's own buildctlArgs), built
// through `slipway build` on a ready local builder of `slipway dev`, and with buildctl directly
// against a bare buildkitd with the same flags on the same host; with the cache emptied before
// each build (cold) and full (warm). Rounds alternate which side goes first.
import { copyFile, cp, mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { toolPath } from '../common/tools';
import { buildctlArgs, parseBuildFlags } from '../cli/build-spec';
import { hostPlatform } from '../common/protocol';
import { table } from '../cli/table';
import { startDev, type Dev } from './lib/dev';
import { startBareBuildkitd, type BareBuildkitd } from './lib/floor';
import { progress, Report, summaryRows } from './lib/report';
import type { Scope } from './lib/scope';
import { slipwayBuild, timedCommand, type SlipwayBuildRun } from './lib/slipway-build';
import { ratio, summarize, type Summary } from './lib/stats';

const cases = ['small', 'steps'] as const;
type Case = (typeof cases)[number];
type Cache = 'cold' | 'warm';

function options(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: { rounds: { type: 'string', default: '10' } },
    strict: true,
  });
  return { rounds: Number(values.rounds) };
}

/** A build context: the Dockerfile's folder with Debian's static busybox as its base. */
async function context(scope: Scope, name: Case): Promise<string> {
  const dir = path.join(await scope.tempDir(`context-${name}`), name);
  await cp(path.join(__dirname, 'dockerfiles', name), dir, { recursive: true });
  await copyFile('/bin/busybox', path.join(dir, 'busybox'));
  return dir;
}

/** Empties a BuildKit's cache through its unix socket: the next build starts from nothing. */
async function prune(unixSocket: string, logFile: string): Promise<void> {
  await timedCommand(
    [toolPath('buildctl'), '--addr', `unix://${unixSocket}`, 'prune', '--all'],
    logFile,
  );
}

/** The unix socket of a local builder, from the buildkitd.toml its machine-agent wrote. */
async function builderSocket(dev: Dev, machineId: string): Promise<string> {
  const config = path.join(dev.agentDir, 'machines', machineId, 'buildkit', 'buildkitd.toml');
  const match = /"unix:\/\/([^"]+)"/.exec(await readFile(config, 'utf8'));
  if (!match) throw new Error(`no unix socket in ${config}`);
  return match[1]!;
}

class Sides {
  private n = 0;
  constructor(
    private readonly scope: Scope,
    private readonly work: string,
    private readonly bare: BareBuildkitd,
    private readonly client: { caFile: string; certFile: string; keyFile: string },
    private readonly dev: Dev,
  ) {}

  private spec(contextDir: string, out: string) {
    return parseBuildFlags(
      contextDir,
      {
        tag: [],
        platform: [],
        buildArg: [],
        output: [`type=oci,dest=${out}`],
        progress: 'plain',
        cache: true,
        secret: [],
      },
      this.work,
      {},
    );
  }

  private next(side: string): { out: string; log: string } {
    const i = ++this.n;
    return {
      out: path.join(this.work, `${side}-${i}.tar`),
      log: path.join(this.work, `${side}-${i}.log`),
    };
  }

  async direct(contextDir: string): Promise<number> {
    const { out, log } = this.next('direct');
    const args = buildctlArgs(
      this.spec(contextDir, out),
      hostPlatform() ?? 'linux/amd64',
      {
        endpoint: this.bare.files.address,
        serverName: this.bare.files.serverName,
        ...this.client,
      },
      'plain',
    );
    const ms = await timedCommand([toolPath('buildctl'), ...args], log);
    await rm(out, { force: true });
    return ms;
  }

  async slipway(contextDir: string): Promise<SlipwayBuildRun> {
    const { out, log } = this.next('slipway');
    return slipwayBuild(this.dev, contextDir, out, log);
  }

  async pruneDirect(): Promise<void> {
    await prune(this.bare.files.unixSocket, this.next('prune-direct').log);
  }

  async pruneSlipway(machineId: string): Promise<void> {
    await prune(await builderSocket(this.dev, machineId), this.next('prune-slipway').log);
  }

  get signal(): AbortSignal {
    return this.scope.signal;
  }
}

interface CaseResult {
  case: Case;
  cache: Cache;
  direct: Summary;
  slipway: Summary;
  slipwayPhases: { cliStart: Summary; acquire: Summary; buildctl: Summary; finish: Summary };
  /** slipway build p50 / buildctl direct p50 (goal: within 1.05). */
  ratio: number;
  /** buildctl inside slipway build p50 / buildctl direct p50: the builder itself. */
  builderRatio: number;
  paths: string[];
}

async function measure(
  sides: Sides,
  name: Case,
  contextDir: string,
  cache: Cache,
  rounds: number,
  machineId: string,
): Promise<CaseResult> {
  progress(`${name}, ${cache} cache: ${rounds} rounds`);
  const direct: number[] = [];
  const slipway: SlipwayBuildRun[] = [];
  if (cache === 'warm') {
    await sides.direct(contextDir);
    await sides.slipway(contextDir);
  }
  for (let i = 0; i < rounds; i++) {
    sides.signal.throwIfAborted();
    const runDirect = async () => {
      if (cache === 'cold') await sides.pruneDirect();
      direct.push(await sides.direct(contextDir));
    };
    const runSlipway = async () => {
      if (cache === 'cold') await sides.pruneSlipway(machineId);
      slipway.push(await sides.slipway(contextDir));
    };
    if (i % 2 === 0) {
      await runDirect();
      await runSlipway();
    } else {
      await runSlipway();
      await runDirect();
    }
  }
  const d = summarize(direct);
  const s = summarize(slipway.map((r) => r.totalMs));
  const buildctl = summarize(slipway.map((r) => r.buildctlMs));
  return {
    case: name,
    cache,
    direct: d,
    slipway: s,
    slipwayPhases: {
      cliStart: summarize(slipway.map((r) => r.cliStartMs)),
      acquire: summarize(slipway.map((r) => r.acquireMs)),
      buildctl,
      finish: summarize(slipway.map((r) => r.finishMs)),
    },
    ratio: ratio(s.p50, d.p50),
    builderRatio: ratio(buildctl.p50, d.p50),
    paths: [...new Set(slipway.map((r) => r.builder.path ?? 'unknown'))],
  };
}

export default async function build(scope: Scope, argv: string[]): Promise<void> {
  const { rounds } = options(argv);
  const report = new Report('build');
  const work = await scope.tempDir('build');
  progress('starting a bare buildkitd and slipway dev');
  const bare = await startBareBuildkitd(scope, path.join(work, 'bare'));
  const client = await bare.files.clientFiles('bench');
  const dev = await startDev(scope);
  await mkdir(path.join(work, 'runs'), { recursive: true });
  const sides = new Sides(scope, path.join(work, 'runs'), bare, client, dev);
  const contexts = {} as Record<Case, string>;
  for (const name of cases) contexts[name] = await context(scope, name);

  // The first build acquires the project's builder (cold path); every measured one finds it ready.
  progress('acquiring the builder');
  const first = await sides.slipway(contexts.small);

  const results: CaseResult[] = [];
  for (const name of cases) {
    for (const cache of ['cold', 'warm'] as const) {
      results.push(
        await measure(sides, name, contexts[name], cache, rounds, first.builder.machineId!),
      );
    }
  }

  report.section(
    'Build time, from starting the command to its exit',
    table(
      ['build', 'cache', 'n', 'buildctl direct p50', 'slipway build p50', 'ratio', 'builder ratio'],
      results.map((r) => [
        r.case,
        r.cache,
        r.direct.n,
        `${r.direct.p50.toFixed(0)} ms`,
        `${r.slipway.p50.toFixed(0)} ms`,
        r.ratio.toFixed(3),
        r.builderRatio.toFixed(3),
      ]),
    ),
  );
  for (const r of results) {
    report.section(
      `${r.case}, ${r.cache} cache (slipway build on the ${r.paths.join('/')} path)`,
      summaryRows([
        ['buildctl direct', r.direct],
        ['slipway build', r.slipway],
        ['  CLI start-up', r.slipwayPhases.cliStart],
        ['  acquire (request to answer)', r.slipwayPhases.acquire],
        ['  buildctl on the builder', r.slipwayPhases.buildctl],
        ['  report and exit', r.slipwayPhases.finish],
      ]),
    );
  }
  report.section(
    'Start-up',
    `bare buildkitd ready in ${bare.startMs.toFixed(0)} ms; slipway dev ready in ${dev.startMs.toFixed(0)} ms; first slipway build (${first.builder.path} path) ${first.totalMs.toFixed(0)} ms`,
  );
  report.finish({
    rounds,
    results: results.map((r) => ({
      case: r.case,
      cache: r.cache,
      directMs: r.direct,
      slipwayMs: r.slipway,
      slipwayPhasesMs: r.slipwayPhases,
      ratio: r.ratio,
      builderRatio: r.builderRatio,
      paths: r.paths,
    })),
    goals: { ratioWithin5Percent: results.every((r) => r.ratio <= 1.05) },
  });
}
