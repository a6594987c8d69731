// Renders buildkitd.toml for one builder: mutual TLS on TCP, a unix socket for local checks,
// the debug/metrics listener on loopback only, and GC that keeps the cache within its volume.
export interface BuildkitdConfigInput {
  /** BuildKit's root: the cache volume (a directory on the local provider). */
  root: string;
  /** host:port of the mTLS listener (0.0.0.0:1234 on a cloud machine, 127.0.0.1:port locally). */
  tcpAddress: string;
  /** Path of the unix socket used by the machine-agent itself; never exposed. */
  unixSocket: string;
  /** Loopback host:port of the debug and metrics server. */
  debugAddress: string;
  tls: { certFile: string; keyFile: string; caFile: string };
  /** Bytes BuildKit may keep on the volume; GC trims the cache below it. */
  maxUsedBytes: number;
  /** Bytes GC keeps free on the volume's filesystem. */
  minFreeBytes: number;
}

function tomlString(value: string): string {
  return JSON.stringify(value); // TOML basic strings share JSON's escapes for what we write
}

export function renderBuildkitdConfig(c: BuildkitdConfigInput): string {
  if (!/^(127\.0\.0\.1|\[::1\]|localhost):\d+$/.test(c.debugAddress)) {
    throw new Error(`debugAddress must be on loopback, got ${c.debugAddress}`);
  }
  return [
    `root = ${tomlString(c.root)}`,
    '',
    '[grpc]',
    `  address = [${tomlString(`tcp://${c.tcpAddress}`)}, ${tomlString(`unix://${c.unixSocket}`)}]`,
    `  debugAddress = ${tomlString(c.debugAddress)}`,
    '',
    '[grpc.tls]',
    `  cert = ${tomlString(c.tls.certFile)}`,
    `  key = ${tomlString(c.tls.keyFile)}`,
    `  ca = ${tomlString(c.tls.caFile)}`,
    '',
    '[worker.oci]',
    '  enabled = true',
    '  gc = true',
    `  maxUsedSpace = ${tomlString(String(Math.floor(c.maxUsedBytes)))}`,
    `  minFreeSpace = ${tomlString(String(Math.floor(c.minFreeBytes)))}`,
    '',
    '[worker.containerd]',
    '  enabled = false',
    '',
  ].join('\n');
}

const GiB = 1024 ** 3;

/**
 * GC limits for a task. The control plane sizes them from the volume's nominal size; the
 * filesystem actually mounted (when known) may be smaller, so neither limit may exceed what it
 * holds: at most a tenth of it kept free, and usage capped below what stays free.
 */
export function gcLimits(
  requested: { maxUsedBytes: number; minFreeBytes: number },
  volumeSizeGb: number,
  filesystemBytes?: number,
): { maxUsedBytes: number; minFreeBytes: number } {
  let maxUsedBytes = Math.min(requested.maxUsedBytes, volumeSizeGb * GiB);
  let minFreeBytes = requested.minFreeBytes;
  if (filesystemBytes !== undefined && filesystemBytes > 0) {
    minFreeBytes = Math.min(minFreeBytes, Math.floor(filesystemBytes / 10));
    maxUsedBytes = Math.min(maxUsedBytes, filesystemBytes - minFreeBytes);
  }
  return { maxUsedBytes: Math.max(maxUsedBytes, 0), minFreeBytes };
}
