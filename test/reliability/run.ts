// `npm run test:reliability`: runs the reliability suite (ava with test/reliability/ava.config.mjs,
// extra arguments passed on) and prints at the end the ledger of every fault injected and input
// tried, with its outcome and whether the test that tried it passed. Exits with ava's status.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { areas, ledgerDirEnv, type LedgerLine } from '../helpers/ledger';

const root = path.resolve(__dirname, '..', '..');

/** Words of `text` in lines of at most `width` characters. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = '';
    }
    line = line ? `${line} ${word}` : word;
    while (line.length > width) {
      lines.push(line.slice(0, width));
      line = line.slice(width);
    }
  }
  return [...lines, line];
}

export function ledgerTable(entries: LedgerLine[]): string {
  const widths = [12, 56, 62, 2];
  const sorted = [...entries].sort((a, b) => areas.indexOf(a.area) - areas.indexOf(b.area));
  const rule = widths.map((w) => '-'.repeat(w)).join('-+-');
  const row = (cells: string[]) => {
    const wrapped = cells.map((c, i) => wrap(c, widths[i]!));
    const height = Math.max(...wrapped.map((w) => w.length));
    const out: string[] = [];
    for (let i = 0; i < height; i++)
      out.push(
        wrapped
          .map((w, j) => (w[i] ?? '').padEnd(widths[j]!))
          .join(' | ')
          .trimEnd(),
      );
    return out.join('\n');
  };
  const passed = entries.filter((e) => e.passed).length;
  return [
    row(['AREA', 'FAULT INJECTED / INPUT TRIED', 'OUTCOME', 'OK']),
    rule,
    ...sorted.map((e) => row([e.area, e.tried, e.outcome, e.passed ? '✔' : '✘'])),
    rule,
    `${entries.length} trials, ${passed} proven by passing tests, ${entries.length - passed} in failed tests`,
  ].join('\n');
}

function readLedger(dir: string): LedgerLine[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) =>
      readFileSync(path.join(dir, f), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as LedgerLine),
    );
}

async function main(): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'slipway-reliability-'));
  const started = performance.now();
  try {
    const ava = spawn(
      process.execPath,
      [
        path.join(root, 'node_modules', 'ava', 'entrypoints', 'cli.mjs'),
        '--config',
        path.join(__dirname, 'ava.config.mjs'),
        ...process.argv.slice(2),
      ],
      { cwd: root, stdio: 'inherit', env: { ...process.env, [ledgerDirEnv]: dir } },
    );
    const code = await new Promise<number>((resolve) =>
      ava.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))),
    );
    const entries = readLedger(dir);
    const minutes = ((performance.now() - started) / 60_000).toFixed(1);
    process.stdout.write(`\nReliability ledger (${minutes} min)\n\n${ledgerTable(entries)}\n`);
    return code;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().then((code) => process.exit(code));
}
