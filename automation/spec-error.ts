// A desired fleet the agent cannot build: every problem found, in one error, each naming the
// field of the fleet to blame, so the control plane's operator fixes them all at once.
export class FleetSpecError extends Error {
  readonly code = 'invalid_fleet';

  constructor(readonly problems: string[]) {
    super(
      `the desired fleet cannot be converged (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map((p) => `  - ${p}`).join('\n'),
    );
  }
}

/** Throws a FleetSpecError when `problems` is not empty. */
export function assertNoProblems(problems: string[]): void {
  if (problems.length > 0) throw new FleetSpecError(problems);
}
