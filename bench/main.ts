// `npm run bench -- NAME [options]`: runs one benchmark of this folder (bench/NAME.ts) with a
// scope that undoes everything it started. Benchmarks are never part of `npm test`.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { runBench, type Scope } from './lib/scope';

const benchmarks = ['acquire', 'build', 'api', 'converge'] as const;

const [name, ...argv] = process.argv.slice(2);
if (!name || !(benchmarks as readonly string[]).includes(name)) {
  const available = benchmarks.filter((b) => existsSync(path.join(__dirname, `${b}.ts`)));
  process.stderr.write(
    `usage: npm run bench -- NAME [options]\nbenchmarks: ${available.join(', ')}\n` +
      'see bench/README.md for what each measures and its options\n',
  );
  process.exit(2);
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const bench = require(`./${name}`) as { default: (scope: Scope, argv: string[]) => Promise<void> };
runBench((scope) => bench.default(scope, argv));
