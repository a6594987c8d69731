// The local fleet's dynamic resources. Pulumi serializes a dynamic provider's functions into the
// stack state and runs them in its provider process; ours stay tiny and only load
// provider-impl from disk (through tsx from source, or the bundled local-provider.cjs), so the
// state holds no captured code and a newer agent's implementation serves older state too.
import path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import type { LocalMachineInputs, LocalVolumeInputs } from './provider-impl';

type Kind = 'machine' | 'volume';

/** Set in the engine's environment: the module the provider process loads. */
export const providerModuleEnv = 'SLIPWAY_LOCAL_PROVIDER_MODULE';

/** The implementation module for this installation: the .ts source, or the bundle's sibling. */
export function providerModulePath(): string {
  return __filename.endsWith('.ts')
    ? path.join(__dirname, 'provider-impl.ts')
    : path.join(__dirname, 'local-provider.cjs');
}

function serializedProvider(kind: Kind): pulumi.dynamic.ResourceProvider {
  const fallbackModule = providerModulePath();
  const tsxApi = fallbackModule.endsWith('.ts') ? require.resolve('tsx/cjs/api') : null;
  const envName = providerModuleEnv;
  // Everything below runs in the provider process; it may only use what it captures by value.
  /* eslint-disable @typescript-eslint/no-require-imports */
  const impl = (): Required<pulumi.dynamic.ResourceProvider> => {
    const file = process.env[envName] || fallbackModule;
    const mod =
      file.endsWith('.ts') && tsxApi ? require(tsxApi).require(file, file) : require(file);
    return mod[kind];
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
  return {
    diff: (id, olds, news) => impl().diff(id, olds, news),
    create: (inputs) => impl().create(inputs),
    read: (id, props) => impl().read(id, props),
    update: (id, olds, news) => impl().update(id, olds, news),
    delete: (id, props) => impl().delete(id, props),
  };
}

const providers: Record<Kind, pulumi.dynamic.ResourceProvider> = {
  machine: serializedProvider('machine'),
  volume: serializedProvider('volume'),
};

type Inputs<T> = { [K in keyof T]: pulumi.Input<T[K]> };

export class LocalMachine extends pulumi.dynamic.Resource {
  static readonly resourceType = 'pulumi-nodejs:dynamic/slipway:LocalMachine';
  declare readonly state: pulumi.Output<string>;
  declare readonly port: pulumi.Output<number>;

  constructor(name: string, args: Inputs<LocalMachineInputs>, opts?: pulumi.CustomResourceOptions) {
    super(
      providers.machine,
      name,
      { ...args, registrationToken: pulumi.secret(args.registrationToken), port: undefined },
      { ...opts, additionalSecretOutputs: ['registrationToken'] },
      'slipway',
      'LocalMachine',
    );
  }
}

export class LocalVolume extends pulumi.dynamic.Resource {
  static readonly resourceType = 'pulumi-nodejs:dynamic/slipway:LocalVolume';
  declare readonly path: pulumi.Output<string>;

  constructor(name: string, args: Inputs<LocalVolumeInputs>, opts?: pulumi.CustomResourceOptions) {
    super(providers.volume, name, args, opts, 'slipway', 'LocalVolume');
  }
}
