// Collects what the engine's event stream says during one operation: the steps per resource,
// the change summary, and the diagnostics (failures carry the URN of the resource to blame).
import type { EngineEvent } from '@pulumi/pulumi/automation';
import {
  urnName,
  type ChangeSummary,
  type PreviewOutcome,
  type ResourceDiagnostic,
  type ResourceStep,
  type StackResource,
} from './outcome';

/** A provider or the stack itself: not a resource of the fleet. */
export function isFleetResource(type: string): boolean {
  return !type.startsWith('pulumi:providers:') && type !== 'pulumi:pulumi:Stack';
}

export class EventCollector {
  readonly steps: ResourceStep[] = [];
  /** Resources being read back by a refresh; their step is known only once the read is done. */
  private readonly refreshing = new Set<string>();
  readonly diagnostics: ResourceDiagnostic[] = [];
  readonly failedUrns: string[] = [];
  /** The state of each resource after its step, as the engine reports it. */
  readonly resources: StackResource[] = [];
  summary: ChangeSummary | undefined;
  canceled = false;

  /** The options every engine call of ours takes: plain text, no progress, events to here. */
  engineOptions(signal?: AbortSignal) {
    return { color: 'never' as const, suppressProgress: true, onEvent: this.onEvent, signal };
  }

  /** What a preview or refresh found, from its events (`fallback` when no summary came). */
  outcome(diff: string, fallback: ChangeSummary = {}): PreviewOutcome {
    const summary = this.summary ?? fallback;
    return { summary, steps: this.steps, diff, hasChanges: summaryHasChanges(summary) };
  }

  readonly onEvent = (event: EngineEvent): void => {
    const pre = event.resourcePreEvent?.metadata;
    if (pre?.op === 'refresh') {
      this.refreshing.add(pre.urn);
    } else if (pre && pre.op !== 'same') {
      const step: ResourceStep = {
        op: pre.op,
        urn: pre.urn,
        type: pre.type,
        name: urnName(pre.urn),
      };
      if (pre.diffs && pre.diffs.length > 0) step.diffs = pre.diffs;
      this.steps.push(step);
    }
    const done = event.resOutputsEvent?.metadata;
    // A refresh step's outputs event carries what the read found: same, update or delete, and
    // the properties that changed. Only what changed is a step (`refresh-update`, `refresh-delete`),
    // which is what a drift report is about.
    if (done && this.refreshing.delete(done.urn) && done.op !== 'same' && done.op !== 'refresh') {
      const step: ResourceStep = {
        op: `refresh-${done.op}`,
        urn: done.urn,
        type: done.type,
        name: urnName(done.urn),
      };
      const diffs = done.diffs?.length ? done.diffs : changedOutputs(done.old, done.new);
      if (diffs.length > 0) step.diffs = diffs;
      this.steps.push(step);
    }
    if (done?.new && isFleetResource(done.type) && !event.resOutputsEvent?.planning) {
      this.resources.push({
        urn: done.urn,
        type: done.type,
        name: urnName(done.urn),
        id: done.new.id,
        outputs: done.new.outputs ?? {},
      });
    }
    const failed = event.resOpFailedEvent?.metadata;
    if (failed) this.failedUrns.push(failed.urn);
    const diag = event.diagnosticEvent;
    if (diag && (diag.severity === 'error' || diag.severity === 'warning') && !diag.ephemeral) {
      const message = diag.message.trim();
      if (message) {
        this.diagnostics.push({
          ...(diag.urn ? { urn: diag.urn } : {}),
          severity: diag.severity,
          message,
        });
      }
    }
    if (event.summaryEvent) this.summary = event.summaryEvent.resourceChanges as ChangeSummary;
    if (event.cancelEvent) this.canceled = true;
  };

  /** Error diagnostics as one line per resource, e.g. "mch_x: InsufficientInstanceCapacity ...". */
  errorText(): string | undefined {
    const lines = this.diagnostics
      .filter((d) => d.severity === 'error')
      .map((d) => `${d.urn ? urnName(d.urn) : 'stack'}: ${d.message.replace(/\s+/g, ' ')}`);
    return lines.length > 0 ? [...new Set(lines)].join('\n') : undefined;
  }
}

/**
 * The outputs that differ between two states of a resource. The engine leaves a refresh step's
 * own list of changed keys empty for providers (such as dynamic ones) that do not diff reads.
 */
function changedOutputs(
  before: { outputs?: Record<string, unknown> } | undefined,
  after: { outputs?: Record<string, unknown> } | undefined,
): string[] {
  if (!before?.outputs || !after?.outputs) return [];
  const keys = new Set([...Object.keys(before.outputs), ...Object.keys(after.outputs)]);
  return [...keys]
    .filter((k) => JSON.stringify(before.outputs?.[k]) !== JSON.stringify(after.outputs?.[k]))
    .sort();
}

/** True when a summary holds any operation besides "same". */
export function summaryHasChanges(summary: ChangeSummary): boolean {
  return Object.entries(summary).some(([op, n]) => op !== 'same' && n > 0);
}
