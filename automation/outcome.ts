// What a Pulumi operation on a fleet stack tells the agent: the change summary, the steps per
// resource and the diff text of a preview, and how an update ended. These map one to one onto
// the apply and drift reports of common/protocol.ts.
import type { z } from 'zod';
import type { capacityFailureSchema, resourceStepSchema } from '../common/protocol';

export type CapacityFailure = z.infer<typeof capacityFailureSchema>;
export type ResourceStep = z.infer<typeof resourceStepSchema>;
export type ChangeSummary = Record<string, number>;

export interface PreviewOutcome {
  summary: ChangeSummary;
  /** Every step other than "same", in engine order. */
  steps: ResourceStep[];
  /** The engine's diff display, secrets masked. */
  diff: string;
  /** True when applying would change anything. */
  hasChanges: boolean;
}

export interface ResourceDiagnostic {
  urn?: string;
  severity: 'warning' | 'error';
  message: string;
}

export type ConvergeResult = 'succeeded' | 'failed' | 'canceled';

/** A resource as the stack state holds it (secret outputs masked). */
export interface StackResource {
  urn: string;
  type: string;
  name: string;
  id: string;
  outputs: Record<string, unknown>;
}

export interface ConvergeOutcome {
  result: ConvergeResult;
  startedAt: Date;
  finishedAt: Date;
  /** When the preview ended and the update (if any) began; null when the preview failed. */
  previewFinishedAt: Date | null;
  /** The preview that decided the update; null when the preview itself failed. */
  preview: PreviewOutcome | null;
  /** Whether an update ran (a preview without changes skips it). */
  updated: boolean;
  /** The update's change summary (the preview's when no update ran). */
  summary: ChangeSummary;
  steps: ResourceStep[];
  /** Errors the engine reported, one line per resource. */
  error?: string;
  /** URNs of the resources whose operation failed. */
  failedUrns: string[];
  diagnostics: ResourceDiagnostic[];
  /**
   * Every resource of the stack after a successful update, from the engine's events; null when
   * no update ran (the stack is as it was) or it failed.
   */
  resources: StackResource[] | null;
}

/** The logical name in a URN (`urn:pulumi:stack::project::type::name`). */
export function urnName(urn: string): string {
  return urn.slice(urn.lastIndexOf('::') + 2);
}

/** The resource type in a URN, its parent chain left out. */
export function urnType(urn: string): string {
  const parts = urn.split('::');
  const types = parts[2] ?? '';
  return types.slice(types.lastIndexOf('$') + 1);
}
