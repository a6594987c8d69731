// What `slipway build` tells the person waiting: why it is waiting and for how long, BuildKit's
// progress (prefixed by platform when several build at once), and the phase timings at the end.
import type { Build, Builder, Platform } from '../common/protocol';

export interface Reporter {
  created(build: Build): void;
  waiting(platform: Platform, reason: string, elapsedMs: number): void;
  ready(platform: Platform, builder: Builder, elapsedMs: number): void;
  line(platform: Platform, text: string): void;
  warn(text: string): void;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

export class StreamReporter implements Reporter {
  private lastReason = new Map<Platform, string>();
  private ticker: NodeJS.Timeout | undefined;
  private waitingLine: { platform: Platform; reason: string; since: number } | undefined;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly interactive: boolean,
    private readonly quiet = false,
  ) {}

  created(build: Build): void {
    if (this.quiet) return;
    const platforms = build.builders.map((b) => b.platform).join(', ');
    this.out.write(`build ${build.id}: requesting builders for ${platforms}\n`);
  }

  waiting(platform: Platform, reason: string, elapsedMs: number): void {
    if (this.quiet) return;
    if (this.interactive) {
      this.waitingLine = { platform, reason, since: performance.now() - elapsedMs };
      this.redraw();
      if (!this.ticker) {
        this.ticker = setInterval(() => this.redraw(), 200);
        this.ticker.unref();
      }
      return;
    }
    if (this.lastReason.get(platform) === reason) return;
    this.lastReason.set(platform, reason);
    this.out.write(`[${platform}] waiting: ${reason} (${seconds(elapsedMs)})\n`);
  }

  private redraw(): void {
    const w = this.waitingLine;
    if (!w) return;
    this.out.write(
      `\r\x1b[2K[${w.platform}] waiting: ${w.reason} (${seconds(performance.now() - w.since)})`,
    );
  }

  private clearWaiting(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    if (this.interactive && this.waitingLine) this.out.write('\r\x1b[2K');
    this.waitingLine = undefined;
  }

  ready(platform: Platform, builder: Builder, elapsedMs: number): void {
    this.clearWaiting();
    if (this.quiet) return;
    const path = builder.path ? `${builder.path} path, ` : '';
    this.out.write(
      `[${platform}] builder ${builder.machineId} ready (${path}${seconds(elapsedMs)}) at ${builder.endpoint}\n`,
    );
  }

  line(platform: Platform, text: string): void {
    if (this.quiet) return;
    this.out.write(`[${platform}] ${text}\n`);
  }

  warn(text: string): void {
    this.clearWaiting();
    this.out.write(`warning: ${text}\n`);
  }
}

export interface PhaseTiming {
  phase: string;
  /** Milliseconds since the request, or undefined when the phase did not happen (hot path). */
  atMs: number | undefined;
}

const phaseNames: [keyof Builder['phases'], string][] = [
  ['pickedUpAt', 'agent picked up'],
  ['machineStartedAt', 'machine started'],
  ['registeredAt', 'machine registered'],
  ['readyAt', 'BuildKit ready'],
  ['answeredAt', 'builder answered'],
];

export function phaseTimings(builder: Builder): PhaseTiming[] {
  const start = Date.parse(builder.phases.requestedAt);
  return phaseNames.map(([key, phase]) => {
    const at = builder.phases[key];
    return { phase, atMs: at ? Math.max(0, Date.parse(at) - start) : undefined };
  });
}

export function formatTimings(build: Build, buildMs: number): string {
  const lines: string[] = [];
  for (const b of build.builders) {
    lines.push(`phase timings, ${b.platform} (${b.path ?? 'unknown'} path), from the request:`);
    for (const t of phaseTimings(b)) {
      lines.push(
        `  ${t.phase.padEnd(20)} ${t.atMs === undefined ? '-' : seconds(t.atMs).padStart(7)}`,
      );
    }
  }
  lines.push(`  ${'build'.padEnd(20)} ${seconds(buildMs).padStart(7)}`);
  return lines.join('\n') + '\n';
}
