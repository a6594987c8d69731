// The whole life of a build against the real control plane over loopback and a real SQLite file,
// from the CLI's, the cloud-agent's and the machine's sides, with the long-polls returning as
// soon as something they wait for changes.
import test from 'ava';
import { coldThenHot } from './helpers/build-scenario';
import { startTestControlPlane } from './helpers/control-plane';

test('a build goes cold, then hot, through every side with early long-poll returns', async (t) => {
  await coldThenHot(t, await startTestControlPlane(t));
});
