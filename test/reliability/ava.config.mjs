// ava configuration of `npm run test:reliability` (test/reliability/run.ts): the project's ava
// settings, this folder's tests only, and a longer timeout for the fault and load scenarios.
import pkg from '../../package.json' with { type: 'json' };

export default {
  ...pkg.ava,
  files: ['test/reliability/**/*.test.ts'],
  timeout: '15m',
  // One file at a time: the fault and load scenarios measure how the system copes, and two of
  // them loading the machine at once would measure each other.
  concurrency: 1,
};
