// Prepares the agent image's node_modules: writes into OUT_DIR a package.json whose dependencies
// are only the packages the bundles leave external (the `--external:` flags of the bundle script
// that are runtime dependencies), at the versions the repository's package-lock.json holds, and
// copies that lock beside it. `npm install --omit=dev` there then installs those packages and
// their dependencies at exactly the locked versions, and nothing of the rest of the repository.
// Usage: node images/agent/runtime-package.cjs REPO_DIR OUT_DIR
const { copyFileSync, mkdirSync, readFileSync, writeFileSync } = require('node:fs');
const path = require('node:path');

function runtimePackage(repoDir) {
  const pkg = JSON.parse(readFileSync(path.join(repoDir, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(path.join(repoDir, 'package-lock.json'), 'utf8'));
  const externals = [...pkg.scripts.bundle.matchAll(/--external:(\S+)/g)].map((m) => m[1]);
  const dependencies = {};
  for (const name of externals) {
    // Externals that are development tools (tsx) are only loaded when running from source.
    if (!(name in pkg.dependencies)) continue;
    const locked = lock.packages[`node_modules/${name}`];
    if (!locked) throw new Error(`${name} is not in package-lock.json; run npm install`);
    dependencies[name] = locked.version;
  }
  return { name: `${pkg.name}-cloud-agent`, version: pkg.version, private: true, dependencies };
}

function main([repoDir, outDir]) {
  if (!repoDir || !outDir) {
    process.stderr.write('usage: node images/agent/runtime-package.cjs REPO_DIR OUT_DIR\n');
    return 2;
  }
  mkdirSync(outDir, { recursive: true });
  const pkg = runtimePackage(repoDir);
  writeFileSync(path.join(outDir, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
  copyFileSync(path.join(repoDir, 'package-lock.json'), path.join(outDir, 'package-lock.json'));
  process.stdout.write(
    `${Object.entries(pkg.dependencies)
      .map(([n, v]) => `${n}@${v}`)
      .join(' ')}\n`,
  );
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));

module.exports = { runtimePackage };
