#!/usr/bin/env node
// The `slipway` executable in the source tree: TypeScript through tsx, then cli/main.ts.
require('tsx/cjs');
const { main } = require('./main.ts');
main(process.argv.slice(2)).then(
  (code) => code !== undefined && process.exit(code),
  (err) => {
    process.stderr.write(`error: ${String(err)}\n`);
    process.exit(1);
  },
);
