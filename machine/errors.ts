// The machine-agent's errors: a stable code and a sentence an operator can act on. Fatal codes
// mean "restarting the agent will not help" and map to their own exit status (see main.ts).
export const machineAgentErrorCodes = [
  'invalid_config',
  'state_mismatch',
  'already_registered',
  'registration_refused',
  'machine_token_rejected',
  'control_plane_unreachable',
  'control_plane_lost',
  'imds_unavailable',
  'task_invalid',
  'certificate_mismatch',
  'volume_device_missing',
  'volume_has_data',
  'volume_unusable',
  'volume_mismatch',
  'mount_failed',
  'mount_point_busy',
  'unmount_failed',
  'buildkitd_failed',
  'shutdown_deadline',
] as const;
export type MachineAgentErrorCode = (typeof machineAgentErrorCodes)[number];

/** Codes that no retry or restart can fix: an operator or a new machine is needed. */
const fatalCodes = new Set<MachineAgentErrorCode>([
  'invalid_config',
  'state_mismatch',
  'already_registered',
  'registration_refused',
  'machine_token_rejected',
  'volume_has_data',
  'volume_mismatch',
]);

export class MachineAgentError extends Error {
  constructor(
    readonly code: MachineAgentErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'MachineAgentError';
  }

  get fatal(): boolean {
    return fatalCodes.has(this.code);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
