// Charts drawn as plain SVG from the control plane's own build data: acquire time per builder
// (hot, warm, cold) on a log scale over time, and builds per time bucket by outcome.
import type { AcquirePath } from '../../../common/protocol';
import { formatDuration, type AcquirePoint, type CountBucket } from '../model';

const width = 640;
const height = 200;
const margin = { left: 56, right: 12, top: 10, bottom: 26 };
const plotW = width - margin.left - margin.right;
const plotH = height - margin.top - margin.bottom;

const pathColors: Record<AcquirePath, string> = {
  hot: 'var(--hot)',
  warm: 'var(--warm)',
  cold: 'var(--cold)',
};

function timeLabel(t: number, spanMs: number): string {
  const d = new Date(t);
  return spanMs > 2 * 86_400_000
    ? d.toLocaleDateString([], { month: 'short', day: 'numeric' })
    : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Acquire time ticks: decades, then a minute, ten minutes and an hour. */
const tickValues = [1, 10, 100, 1000, 10_000, 60_000, 600_000, 3_600_000];

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function AcquireChart({ points, now }: { points: AcquirePoint[]; now: number }) {
  if (points.length === 0) {
    return <p className="muted">No builder has been handed out yet.</p>;
  }
  const t0 = points[0]!.at;
  const t1 = Math.max(now, points[points.length - 1]!.at);
  const span = Math.max(1, t1 - t0);
  // Log scale from the tick below the fastest to the tick above the slowest: hot acquires take
  // milliseconds, cold ones minutes, and at least two ticks frame even a single point.
  const values = points.map((p) => Math.max(1, p.ms));
  const below = [...tickValues].reverse().find((v) => v <= Math.min(...values)) ?? 1;
  const above = tickValues.find((v) => v > Math.max(...values)) ?? tickValues.at(-1)!;
  const lo = Math.log10(below);
  const hi = Math.log10(above);
  const x = (t: number) => margin.left + 8 + ((t - t0) / span) * (plotW - 16);
  const y = (v: number) =>
    margin.top + plotH - ((Math.log10(Math.max(1, v)) - lo) / (hi - lo)) * plotH;
  const ticks = tickValues.filter((v) => v >= below && v <= above);
  const byPath = (['hot', 'warm', 'cold'] as const).map((path) => ({
    path,
    values: points.filter((p) => p.path === path).map((p) => p.ms),
  }));
  return (
    <figure className="chart" data-testid="acquire-chart">
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label="acquire time by path">
        {ticks.map((v) => (
          <g key={v}>
            <line className="grid" x1={margin.left} x2={width - margin.right} y1={y(v)} y2={y(v)} />
            <text className="axis" x={margin.left - 6} y={y(v) + 4} textAnchor="end">
              {formatDuration(v)}
            </text>
          </g>
        ))}
        <text className="axis" x={margin.left} y={height - 6}>
          {timeLabel(t0, span)}
        </text>
        <text className="axis" x={width - margin.right} y={height - 6} textAnchor="end">
          {timeLabel(t1, span)}
        </text>
        {points.map((p) => (
          <circle
            key={`${p.buildId}-${p.platform}`}
            className={`point point-${p.path}`}
            cx={x(p.at)}
            cy={y(p.ms)}
            r={4}
            fill={pathColors[p.path]}
          >
            <title>{`${p.buildId} ${p.platform}: ${p.path}, ${formatDuration(p.ms)}`}</title>
          </circle>
        ))}
      </svg>
      <figcaption className="legend">
        {byPath.map(({ path, values }) => (
          <span key={path} className="legend-item" data-path={path}>
            <span className="swatch" style={{ background: pathColors[path] }} />
            {path}:{' '}
            {values.length ? `${values.length}, median ${formatDuration(median(values))}` : 'none'}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}

export function BuildCountChart({ buckets }: { buckets: CountBucket[] }) {
  if (buckets.length === 0) return <p className="muted">No builds yet.</p>;
  const max = Math.max(1, ...buckets.map((b) => b.succeeded + b.failed + b.other));
  const slot = plotW / buckets.length;
  const barW = Math.min(48, Math.max(2, slot * 0.7));
  const y = (v: number) => (v / max) * plotH;
  const span = buckets.length * buckets[0]!.size;
  const stack: Array<[keyof Omit<CountBucket, 'start' | 'size'>, string]> = [
    ['succeeded', 'var(--ok)'],
    ['failed', 'var(--bad)'],
    ['other', 'var(--muted)'],
  ];
  return (
    <figure className="chart" data-testid="count-chart">
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label="builds over time">
        {[0, max].map((v) => (
          <g key={v}>
            <line
              className="grid"
              x1={margin.left}
              x2={width - margin.right}
              y1={margin.top + plotH - y(v)}
              y2={margin.top + plotH - y(v)}
            />
            <text
              className="axis"
              x={margin.left - 6}
              y={margin.top + plotH - y(v) + 4}
              textAnchor="end"
            >
              {v}
            </text>
          </g>
        ))}
        {buckets.map((b, i) => {
          let base = 0;
          return (
            <g key={b.start}>
              <title>{`${timeLabel(b.start, span)}: ${b.succeeded} succeeded, ${b.failed} failed, ${b.other} other`}</title>
              {stack.map(([field, color]) => {
                const h = y(b[field]);
                base += h;
                return h > 0 ? (
                  <rect
                    key={field}
                    x={margin.left + i * slot + (slot - barW) / 2}
                    y={margin.top + plotH - base}
                    width={barW}
                    height={h}
                    fill={color}
                  />
                ) : null;
              })}
            </g>
          );
        })}
        <text className="axis" x={margin.left} y={height - 6}>
          {timeLabel(buckets[0]!.start, span)}
        </text>
        <text className="axis" x={width - margin.right} y={height - 6} textAnchor="end">
          per {formatDuration(buckets[0]!.size)}
        </text>
      </svg>
      <figcaption className="legend">
        {stack.map(([field, color]) => (
          <span key={field} className="legend-item">
            <span className="swatch" style={{ background: color }} />
            {field}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}
