// Preloaded into the Pulumi dynamic provider process by pulumi-resource-pulumi-nodejs beside it.
// Requiring @pulumi/pulumi's runtime loads the TypeScript compiler and npm's Arborist, which serve
// only to serialize closures and find their packages, something a program does and the provider
// process never does. They are most of its start-up, paid on every preview and every update, so
// here each loads on its first use instead (which, in this process, never comes).
const Module = require('node:module');

const deferred = new Set(['typescript', '@npmcli/arborist']);
const load = Module._load;

Module._load = function (request, parent, isMain) {
  if (!deferred.has(request)) return load.apply(this, arguments);
  let loaded;
  const real = () => (loaded ??= load.call(Module, request, parent, isMain));
  return new Proxy(
    {},
    {
      // Claiming to be an ES module keeps `import * as x` (__importStar) from copying every key.
      get: (_, key) => (key === '__esModule' ? true : Reflect.get(real(), key)),
      has: (_, key) => Reflect.has(real(), key),
      ownKeys: () => Reflect.ownKeys(real()),
      getOwnPropertyDescriptor: (_, key) => {
        const descriptor = Reflect.getOwnPropertyDescriptor(real(), key);
        return descriptor && { ...descriptor, configurable: true };
      },
    },
  );
};
