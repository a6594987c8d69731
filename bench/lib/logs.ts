// Milestones the control plane does not record, read from the structured logs of `slipway dev`
// (the embedded cloud-agent's converges) and of a local machine-agent (its process start, its
// buildkitd ready). Pino writes epoch milliseconds in `time`, from the same clock as the rest.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { waitFor } from '../../common/wait';

interface LogLine {
  time: number;
  msg: string;
  generation?: number;
  previewMs?: number;
}

async function readLines(file: string): Promise<LogLine[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const lines: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(line) as LogLine);
    } catch {
      // a line still being written
    }
  }
  return lines;
}

export interface Converge {
  generation: number;
  startedAt: number;
  /** The preview ended (and the update began). */
  previewFinishedAt?: number;
  finishedAt: number;
}

/** The cloud-agent's converges (preview and up), paired by generation, oldest first. */
export async function agentConverges(logFile: string): Promise<Converge[]> {
  const lines = await readLines(logFile);
  const out: Converge[] = [];
  for (const [i, line] of lines.entries()) {
    if (line.msg !== 'converging') continue;
    const end = lines
      .slice(i + 1)
      .find((l) => l.msg === 'converge finished' && l.generation === line.generation);
    if (!end) continue;
    out.push({
      generation: line.generation!,
      startedAt: line.time,
      ...(end.previewMs !== undefined ? { previewFinishedAt: line.time + end.previewMs } : {}),
      finishedAt: end.time,
    });
  }
  return out;
}

interface MachineMilestones {
  /** The machine-agent's first line after `since`: Node started and its code loaded. */
  processStartedAt?: number;
  buildkitdReadyAt?: number;
}

/** A local machine's milestones after `since` (its log is appended to across restarts). */
export async function machineMilestones(
  agentDir: string,
  machineId: string,
  since: number,
): Promise<MachineMilestones> {
  const file = path.join(agentDir, 'machines', machineId, 'machine-agent.log');
  // Written by another process: the line may land a moment after the control plane heard.
  const lines = await waitFor(
    async () => {
      const after = (await readLines(file)).filter((l) => l.time >= since);
      return after.some((l) => l.msg === 'buildkitd ready') ? after : undefined;
    },
    { timeoutMs: 5000, intervalMs: 20, what: `the log of machine ${machineId}` },
  ).catch(() => [] as LogLine[]);
  return {
    processStartedAt: lines.find((l) => l.msg === 'machine-agent starting')?.time,
    buildkitdReadyAt: lines.find((l) => l.msg === 'buildkitd ready')?.time,
  };
}
