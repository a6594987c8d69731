// Everything a benchmark starts (servers, processes, temporary directories) is registered here
// and undone in reverse order when it ends, fails or is interrupted with Ctrl-C.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

export class Scope {
  private readonly undo: (() => unknown)[] = [];
  /** Aborted on Ctrl-C or SIGTERM, so long loops can stop early. */
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();

  constructor() {
    this.signal = this.controller.signal;
  }

  defer(fn: () => unknown): void {
    this.undo.push(fn);
  }

  async tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), `slipway-bench-${prefix}-`));
    this.defer(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  abort(reason: string): void {
    this.controller.abort(new Error(reason));
  }

  async close(): Promise<void> {
    while (this.undo.length > 0) {
      const fn = this.undo.pop()!;
      try {
        await fn();
      } catch (err) {
        process.stderr.write(`[bench] cleanup failed: ${(err as Error).message}\n`);
      }
    }
  }
}

/** Runs a benchmark's body with a scope that is always closed; exits non-zero on failure. */
export function runBench(body: (scope: Scope) => Promise<void>): void {
  const scope = new Scope();
  const onSignal = (sig: NodeJS.Signals) => scope.abort(`interrupted by ${sig}`);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  body(scope)
    .then(
      () => scope.close(),
      async (err: unknown) => {
        process.stderr.write(
          `[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
        );
        await scope.close();
        process.exitCode = 1;
      },
    )
    .finally(() => {
      // Whatever a library left open (sockets in keep-alive, timers) must not keep the run going;
      // stdout to a file or pipe is written synchronously on Linux, so nothing is lost.
      process.exit();
    });
}
