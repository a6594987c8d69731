// The reliability suite's ledger: every test writes down the faults it injected and the inputs it
// tried, each with what happened, and `npm run test:reliability` prints them as one table at the
// end (test/reliability/run.ts). Outside that runner the ledger is simply not written.
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';

/** The directory the runner collects the entries in, one JSON-lines file per test process. */
export const ledgerDirEnv = 'SLIPWAY_RELIABILITY_LEDGER';

export const areas = [
  'fault',
  'lost machine',
  'load',
  'bad input',
  'certificate',
  'secret',
] as const;
export type Area = (typeof areas)[number];

export interface Entry {
  area: Area;
  /** The fault injected or the input tried, in a few words. */
  tried: string;
  /** What happened, as a user or operator would see it. */
  outcome: string;
}

export interface LedgerLine extends Entry {
  test: string;
  /** Whether the test that recorded it passed: an entry of a failed test is not proven. */
  passed: boolean;
}

export interface Ledger {
  record(area: Area, tried: string, outcome: string): void;
}

/** A ledger for one test; its entries are written when the test ends, with its result. */
export function ledger(t: ExecutionContext): Ledger {
  const entries: Entry[] = [];
  t.teardown(() => {
    const dir = process.env[ledgerDirEnv];
    if (!dir || entries.length === 0) return;
    const lines = entries.map(
      (e) => JSON.stringify({ ...e, test: t.title, passed: t.passed } satisfies LedgerLine) + '\n',
    );
    appendFileSync(path.join(dir, `${process.pid}.jsonl`), lines.join(''));
  });
  return {
    record(area, tried, outcome) {
      entries.push({ area, tried, outcome: outcome.replace(/\s+/g, ' ').trim() });
    },
  };
}
