// What every benchmark prints: the machine it ran on and how loaded it was, human tables, and as
// its last line one JSON object with the figures, so runs can be compared over time. Progress
// goes to stderr, so stdout stays the report.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { table } from '../../cli/table';
import type { Summary } from './stats';

interface MachineInfo {
  cores: number;
  cpu: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  commit: string;
}

function machineInfo(): MachineInfo {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout: the figures still stand, only unattributed
  }
  return {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    commit,
  };
}

/** The 1, 5 and 15 minute load averages, two decimals. */
function loadAverage(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

export function progress(text: string): void {
  process.stderr.write(`[bench] ${text}\n`);
}

const ms = (x: number) => (Number.isFinite(x) ? `${x.toFixed(1)} ms` : '-');

/** Table rows for named summaries of milliseconds. */
export function summaryRows(entries: [string, Summary][]): string {
  return table(
    ['what', 'n', 'p50', 'p95', 'min', 'max'],
    entries.map(([name, s]) => [name, s.n, ms(s.p50), ms(s.p95), ms(s.min), ms(s.max)]),
  );
}

export class Report {
  private readonly startedAt = new Date();
  private readonly loadAtStart = loadAverage();
  private readonly machine = machineInfo();

  constructor(private readonly bench: string) {
    const m = this.machine;
    console.log(
      `${bench}: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, ${m.kernel}, node ${m.node}, ` +
        `commit ${m.commit}; load average at start ${this.loadAtStart.join(' ')}`,
    );
  }

  /** A titled section of the human report. */
  section(title: string, body: string): void {
    console.log(`\n${title}\n${body.trimEnd()}`);
  }

  /** The closing lines: load at the end, then the JSON object (always the last line). */
  finish(figures: Record<string, unknown>, notes: string[] = []): void {
    const loadAtEnd = loadAverage();
    for (const note of notes) console.log(`note: ${note}`);
    console.log(`\nload average at end ${loadAtEnd.join(' ')}`);
    console.log(
      JSON.stringify({
        bench: this.bench,
        date: this.startedAt.toISOString(),
        machine: this.machine,
        load: { start: this.loadAtStart, end: loadAtEnd },
        figures,
        notes,
      }),
    );
  }
}
