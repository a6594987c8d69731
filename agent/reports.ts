// Turns what automation/ reports about a Pulumi operation into the apply and drift reports of
// the sync call, within the control plane's size limits (a huge diff is cut, never refused).
import type { CapacityFailure, ConvergeOutcome, PreviewOutcome } from '../automation/outcome';
import type { ApplyReport, DriftReport } from './state';

const limits = { diff: 2_000_000, steps: 10_000, error: 20_000, failures: 1000, orphans: 1000 };

function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const note = `\n... (${text.length - max} more characters cut)`;
  return text.slice(0, max - note.length) + note;
}

export function convergeReport(
  generation: number,
  outcome: ConvergeOutcome,
  extra: { capacityFailures: CapacityFailure[]; orphansRemoved: string[] },
): ApplyReport {
  return {
    generation,
    kind: 'converge',
    result: outcome.result,
    startedAt: outcome.startedAt.toISOString(),
    finishedAt: outcome.finishedAt.toISOString(),
    summary: outcome.summary,
    steps: outcome.steps.slice(0, limits.steps),
    // The audit record keeps the preview: what was decided before anything changed.
    diff: cut(outcome.preview?.diff ?? '', limits.diff),
    ...(outcome.error ? { error: cut(outcome.error, limits.error) } : {}),
    capacityFailures: extra.capacityFailures.slice(0, limits.failures),
    orphansRemoved: extra.orphansRemoved.slice(0, limits.orphans),
  };
}

/** A converge without a Pulumi run: nothing to show but its result and what `extra` adds. */
function noRunReport(
  generation: number,
  startedAt: Date,
  finishedAt: Date,
  extra: Partial<ApplyReport> = {},
): ApplyReport {
  return {
    generation,
    kind: 'converge',
    result: 'succeeded',
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    summary: {},
    steps: [],
    diff: '',
    capacityFailures: [],
    orphansRemoved: [],
    ...extra,
  };
}

/** A converge that could not start (unbuildable fleet, stack unusable); nothing was changed. */
export function failedReport(generation: number, error: string, at: Date): ApplyReport {
  return noRunReport(generation, at, at, { result: 'failed', error: cut(error, limits.error) });
}

/** A new generation that changes nothing to build: applied without a Pulumi run. */
export function unchangedReport(generation: number, at: Date): ApplyReport {
  return noRunReport(generation, at, at);
}

/** Orphans found and removed between updates (with a drift check). */
export function orphansReport(generation: number, startedAt: Date, removed: string[]): ApplyReport {
  return noRunReport(generation, startedAt, new Date(), {
    orphansRemoved: removed.slice(0, limits.orphans),
  });
}

export function recoveryReport(
  generation: number,
  startedAt: Date,
  description: string,
  refresh: PreviewOutcome | null,
): ApplyReport {
  return {
    generation,
    kind: 'recovery',
    result: 'succeeded',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    summary: refresh?.summary ?? {},
    steps: (refresh?.steps ?? []).slice(0, limits.steps),
    diff: cut(`${description}\n${refresh?.diff ?? ''}`.trim(), limits.diff),
    capacityFailures: [],
    orphansRemoved: [],
  };
}

export function driftReport(preview: PreviewOutcome, checkedAt: Date): DriftReport {
  return {
    checkedAt: checkedAt.toISOString(),
    summary: preview.summary,
    steps: preview.steps.slice(0, limits.steps),
    diff: cut(preview.diff, limits.diff),
  };
}
