// moto's server (installed by `npm run tools`) on a loopback port: the EC2 API the AWS code is
// tested against. A test file starts one in `test.before` and stops it in `test.after.always`.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { freePort } from '../../common/net';
import { toolPath } from '../../common/tools';
import { waitFor } from '../../common/wait';

export interface Moto {
  endpoint: string;
  stop(): Promise<void>;
}

export async function startMoto(): Promise<Moto> {
  const port = await freePort();
  const child = spawn(toolPath('moto_server'), ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  };
  const endpoint = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`moto_server exited: ${stderr}`);
      const res = await fetch(`${endpoint}/moto-api/`);
      return res.ok;
    },
    { timeoutMs: 30_000, what: 'moto_server to answer' },
  ).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  // The SDK signs requests; moto accepts any credentials.
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  return { endpoint, stop };
}
