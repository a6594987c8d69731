// buildkitd.toml as the machine-agent writes it: GC never lets the cache outgrow its volume or
// the filesystem really mounted, and the debug/metrics listener never leaves loopback.
import test from 'ava';
import fc from 'fast-check';
import { gcLimits, renderBuildkitdConfig } from '../machine/buildkitd-config';

const GiB = 1024 ** 3;

test('GC limits stay within the volume and the mounted filesystem', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 46 }),
      fc.integer({ min: 0, max: 2 ** 44 }),
      fc.integer({ min: 1, max: 16_384 }),
      fc.option(fc.integer({ min: 1, max: 2 ** 46 }), { nil: undefined }),
      (maxUsedBytes, minFreeBytes, sizeGb, fsBytes) => {
        const gc = gcLimits({ maxUsedBytes, minFreeBytes }, sizeGb, fsBytes);
        const withinVolume = gc.maxUsedBytes <= Math.min(maxUsedBytes, sizeGb * GiB);
        const withinFs =
          fsBytes === undefined ||
          (gc.maxUsedBytes + gc.minFreeBytes <= fsBytes && gc.minFreeBytes <= fsBytes / 10);
        return gc.maxUsedBytes >= 0 && withinVolume && withinFs;
      },
    ),
  );
  // A 50 GB task on a 50 GB volume is left as the control plane asked.
  t.deepEqual(gcLimits({ maxUsedBytes: 40 * GiB, minFreeBytes: 5 * GiB }, 50, 50 * GiB), {
    maxUsedBytes: 40 * GiB,
    minFreeBytes: 5 * GiB,
  });
});

test('the debug listener must be on loopback', (t) => {
  const base = {
    root: '/var/lib/slipway/volumes/vol_x',
    tcpAddress: '0.0.0.0:8372',
    unixSocket: '/var/lib/slipway/buildkit/buildkitd.sock',
    tls: { certFile: '/c', keyFile: '/k', caFile: '/ca' },
    maxUsedBytes: GiB,
    minFreeBytes: 0,
  };
  t.throws(() => renderBuildkitdConfig({ ...base, debugAddress: '0.0.0.0:6060' }), {
    message: /loopback/,
  });
  const toml = renderBuildkitdConfig({ ...base, debugAddress: '127.0.0.1:6060' });
  t.regex(
    toml,
    /address = \["tcp:\/\/0\.0\.0\.0:8372", "unix:\/\/\/var\/lib\/slipway\/buildkit\/buildkitd\.sock"\]/,
  );
  t.regex(toml, /\[grpc\.tls\]\n  cert = "\/c"\n  key = "\/k"\n  ca = "\/ca"/);
});
