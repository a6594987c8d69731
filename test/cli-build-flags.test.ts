// `slipway build` takes the flags people know from `docker buildx build` and turns them into the
// buildctl command line that runs against the builder.
import test from 'ava';
import path from 'node:path';
import { buildctlArgs, parseBuildFlags, type BuildFlags } from '../cli/build-spec';
import { CliError } from '../cli/errors';

const fixture = path.join(__dirname, 'fixtures', 'scratch-copy');
const conn = {
  endpoint: 'tcp://127.0.0.1:9999',
  serverName: 'mch_x.builders.slipway.internal',
  caFile: '/t/ca.pem',
  certFile: '/t/cert.pem',
  keyFile: '/t/key.pem',
};

function flags(over: Partial<BuildFlags> = {}): BuildFlags {
  return {
    tag: [],
    platform: [],
    buildArg: [],
    output: [],
    progress: 'auto',
    cache: true,
    secret: [],
    ...over,
  };
}

function valueAfter(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));
}

test('buildx flags map to buildctl: file, platform, build args, target, output, secrets, no-cache', (t) => {
  const spec = parseBuildFlags(
    fixture,
    flags({
      file: path.join(fixture, 'Dockerfile'),
      tag: ['example.com/app:1'],
      platform: ['amd64'],
      buildArg: ['VERSION=1.2', 'FROM_ENV'],
      target: 'final',
      output: ['type=oci,dest=out.tar'],
      cache: false,
      secret: ['id=npmrc,src=/home/me/.npmrc'],
    }),
    '/work',
    { FROM_ENV: 'yes' },
  );
  const args = buildctlArgs(spec, 'linux/amd64', conn, 'plain');
  t.deepEqual(valueAfter(args, '--addr'), ['tcp://127.0.0.1:9999']);
  t.deepEqual(valueAfter(args, '--tlsservername'), ['mch_x.builders.slipway.internal']);
  t.deepEqual(valueAfter(args, '--local'), [`context=${fixture}`, `dockerfile=${fixture}`]);
  t.deepEqual(valueAfter(args, '--opt'), [
    'filename=Dockerfile',
    'platform=linux/amd64',
    'target=final',
    'build-arg:VERSION=1.2',
    'build-arg:FROM_ENV=yes',
  ]);
  t.deepEqual(valueAfter(args, '--output'), ['type=oci,dest=/work/out.tar,name=example.com/app:1']);
  t.deepEqual(valueAfter(args, '--secret'), ['id=npmrc,src=/home/me/.npmrc']);
  t.true(args.includes('--no-cache'));
});

test('several platforms each write their own output file', (t) => {
  const spec = parseBuildFlags(
    fixture,
    flags({ platform: ['linux/amd64,linux/arm64'], output: ['type=oci,dest=/o/img.tar'] }),
    '/',
    {},
  );
  t.deepEqual(spec.platforms, ['linux/amd64', 'linux/arm64']);
  t.deepEqual(valueAfter(buildctlArgs(spec, 'linux/arm64', conn, 'plain'), '--output'), [
    'type=oci,dest=/o/img.linux-arm64.tar',
  ]);
});

test('a bare --output path means a local directory, like buildx', (t) => {
  const spec = parseBuildFlags(fixture, flags({ output: ['out'] }), '/w', {});
  t.deepEqual(spec.outputs[0]!.attrs, { type: 'local', dest: '/w/out' });
});

test('bad flags fail with a message naming the flag and the fix', (t) => {
  const cases: [Partial<BuildFlags>, RegExp][] = [
    [
      { platform: ['windows/amd64'] },
      /--platform windows\/amd64 is not supported; use one of linux\/amd64, linux\/arm64/,
    ],
    [{ buildArg: ['1BAD=x'] }, /--build-arg 1BAD=x/],
    [{ output: ['type=oci'] }, /type=oci needs dest=PATH/],
    [{ output: ['type=weird,dest=x'] }, /type must be one of/],
    [{ output: ['-'] }, /stdout is not supported/],
    [{ progress: 'fancy' }, /--progress fancy/],
    [{ secret: ['src=/x'] }, /needs id=NAME/],
    [{ push: true }, /needs a name: add -t/],
    [{ file: '/nope/Dockerfile' }, /--file \/nope\/Dockerfile: no such file/],
  ];
  for (const [over, message] of cases) {
    const err = t.throws(() => parseBuildFlags(fixture, flags(over), '/', {}), {
      instanceOf: CliError,
    });
    t.regex(err!.message, message);
  }
  t.throws(() => parseBuildFlags('/definitely/not/here', flags(), '/', {}), {
    message: /is not a directory/,
  });
  t.throws(() => parseBuildFlags(path.join(__dirname, 'helpers'), flags(), '/', {}), {
    message: /no Dockerfile in .*pass -f/,
  });
});
