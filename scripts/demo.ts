// The main job of the README: start `slipway dev` on a fresh data directory, build
// examples/hello on a self-hosted local builder twice (the second time the builder is warm and
// the cache full), print where the time went in each phase, and shut everything down.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { z } from 'zod';
import { buildSchema } from '../common/protocol';
import { waitFor } from '../common/wait';
import { phaseTimings } from '../cli/reporter';

const root = path.resolve(__dirname, '..');
const slipway = [process.execPath, path.join(root, 'cli', 'slipway.js')];
const metadataSchema = z.object({ build: buildSchema, buildMs: z.number() });

function say(line: string): void {
  process.stdout.write(`\x1b[1m==> ${line}\x1b[0m\n`);
}

function run(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const child = spawn(slipway[0]!, [...slipway.slice(1), ...args], { stdio: 'inherit', env });
  return once(child, 'close').then(([code]) => (code as number | null) ?? 1);
}

async function readEnvFile(file: string): Promise<Record<string, string> | undefined> {
  if (!existsSync(file)) return undefined;
  const text = await readFile(file, 'utf8');
  const entries = text
    .split('\n')
    .filter((l) => l.includes('='))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const);
  return entries.length >= 3 ? Object.fromEntries(entries) : undefined;
}

function seconds(ms: number | undefined): string {
  return ms === undefined ? '-' : `${(ms / 1000).toFixed(2)}s`;
}

async function main(): Promise<number> {
  const work = await mkdtemp(path.join(tmpdir(), 'slipway-demo-'));
  const dataDir = path.join(work, 'dev');
  const exportFile = path.join(work, 'env');
  const outputs = path.join(root, '.slipway', 'demo');
  await mkdir(outputs, { recursive: true });
  let dev: ChildProcess | undefined;
  try {
    say(`starting slipway dev (data in ${dataDir})`);
    dev = spawn(
      slipway[0]!,
      [
        ...slipway.slice(1),
        'dev',
        '--data-dir',
        dataDir,
        '--listen',
        '127.0.0.1:0',
        '--export-file',
        exportFile,
        '--project',
        'hello',
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    const exited = once(dev, 'exit');
    const devEnv = await Promise.race([
      waitFor(() => readEnvFile(exportFile), { timeoutMs: 120_000, what: 'slipway dev to start' }),
      exited.then(([code]) => {
        throw new Error(`slipway dev exited with code ${code} before it was ready`);
      }),
    ]);
    const env = { ...process.env, ...devEnv, SLIPWAY_CONFIG: path.join(work, 'config.json') };

    const context = path.join(work, 'hello');
    await cp(path.join(root, 'examples', 'hello'), context, { recursive: true });
    await copyFile('/bin/busybox', path.join(context, 'busybox'));

    const rounds: { label: string; meta: z.infer<typeof metadataSchema>; wallMs: number }[] = [];
    for (const label of ['first build (new builder)', 'second build (warm builder, cached)']) {
      const n = rounds.length + 1;
      say(`${label}: slipway build examples/hello --output type=oci,dest=hello-${n}.tar`);
      const started = performance.now();
      const meta = path.join(work, `build-${n}.json`);
      const code = await run(
        [
          'build',
          context,
          '--progress',
          'plain',
          '--output',
          `type=oci,dest=${path.join(outputs, `hello-${n}.tar`)}`,
          '--metadata-file',
          meta,
        ],
        env,
      );
      const wallMs = performance.now() - started;
      if (code !== 0) {
        say(`the build failed with exit code ${code}; logs: ${path.join(dataDir, 'dev.log')}`);
        return code;
      }
      rounds.push({
        label,
        meta: metadataSchema.parse(JSON.parse(await readFile(meta, 'utf8'))),
        wallMs,
      });
    }

    say('where the time went (from the build request)');
    const header = ['phase', ...rounds.map((r) => `${r.meta.build.builders[0]?.path ?? '?'} path`)];
    const rows: string[][] = [];
    const phases = rounds.map((r) => phaseTimings(r.meta.build.builders[0]!));
    for (let i = 0; i < phases[0]!.length; i++) {
      rows.push([phases[0]![i]!.phase, ...phases.map((p) => seconds(p[i]!.atMs))]);
    }
    rows.push(['build (buildctl)', ...rounds.map((r) => seconds(r.meta.buildMs))]);
    rows.push(['total (wall clock)', ...rounds.map((r) => seconds(r.wallMs))]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) =>
      r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ');
    process.stdout.write(`${line(header)}\n${rows.map(line).join('\n')}\n`);
    process.stdout.write(
      `\nOCI images: ${rounds.map((_, i) => path.join(outputs, `hello-${i + 1}.tar`)).join(', ')}\n`,
    );
    return 0;
  } finally {
    if (dev && dev.exitCode === null) {
      say('stopping slipway dev');
      const exited = once(dev, 'exit');
      dev.kill('SIGINT');
      await exited;
    }
    await rm(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
