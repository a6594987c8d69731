// The time a build spent in each phase, as one bar per builder: waiting for the agent,
// creating the machine, registering, starting BuildKit, answering the CLI, building.
import type { Build } from '../../../common/protocol';
import {
  builderSegments,
  formatDuration,
  phaseLabels,
  segmentLabel,
  type PhaseName,
} from '../model';

export const phaseOrder: PhaseName[] = [
  'queued',
  'provisioning',
  'booting',
  'starting',
  'handoff',
  'build',
];

/** Total time of the longest builder, to draw every bar of a listing on one scale. */
export function buildSpanMs(build: Build, now: number): number {
  return Math.max(
    0,
    ...build.builders.map((b) =>
      builderSegments(build, b, now).reduce((s, x) => s + x.durationMs, 0),
    ),
  );
}

export function PhaseBars({ build, now, scaleMs }: { build: Build; now: number; scaleMs: number }) {
  return (
    <div className="phase-bars">
      {build.builders.map((builder) => {
        const segments = builderSegments(build, builder, now);
        const total = segments.reduce((s, x) => s + x.durationMs, 0);
        return (
          <div className="phase-row" key={builder.platform}>
            <span className="phase-platform">{builder.platform}</span>
            <div className="phase-track" aria-label={`phases on ${builder.platform}`}>
              {segments.map((seg) => (
                <span
                  key={seg.phase}
                  className={`phase phase-${seg.phase}${seg.open ? ' phase-open' : ''}`}
                  data-phase={seg.phase}
                  style={{ width: `${scaleMs > 0 ? (100 * seg.durationMs) / scaleMs : 0}%` }}
                  title={`${segmentLabel(seg)}: ${formatDuration(seg.durationMs)}${seg.open ? ' so far' : ''}`}
                />
              ))}
            </div>
            <span className="phase-total">{formatDuration(total)}</span>
          </div>
        );
      })}
    </div>
  );
}

export function PhaseLegend() {
  return (
    <div className="legend">
      {phaseOrder.map((phase) => (
        <span key={phase} className="legend-item">
          <span className={`swatch phase-${phase}`} />
          {phaseLabels[phase]}
        </span>
      ))}
    </div>
  );
}
