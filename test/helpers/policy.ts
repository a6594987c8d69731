// Runs Pulumi policies on resource properties the way the policy analyzer does (type matching,
// configuration with schema defaults, not-applicable results), without an engine.
import type {
  Policy,
  PolicyResource,
  ResourceValidation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationPolicy,
} from '@pulumi/policy';

class NotApplicable extends Error {}

type ResourceClass = { isInstance?(obj: unknown): boolean };

function isType(type: string) {
  return (cls: unknown) => (cls as ResourceClass).isInstance?.({ __pulumiType: type }) === true;
}

function configOf(policy: Policy, overrides: Record<string, unknown>): Record<string, unknown> {
  const defaults: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(policy.configSchema?.properties ?? {})) {
    if (typeof schema === 'object' && schema.default !== undefined) defaults[key] = schema.default;
  }
  return { ...defaults, ...overrides };
}

const opts = {
  protect: false,
  ignoreChanges: [],
  aliases: [],
  customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
  additionalSecretOutputs: [],
};

export interface PolicyInput {
  type: string;
  name?: string;
  props: Record<string, unknown>;
}

/** The violations a resource policy reports for one resource ([] when it complies or does not apply). */
export async function resourceViolations(
  policy: ResourceValidationPolicy,
  resource: PolicyInput,
  config: Record<string, unknown> = {},
): Promise<string[]> {
  const violations: string[] = [];
  const name = resource.name ?? 'r';
  const args: ResourceValidationArgs = {
    type: resource.type,
    props: resource.props,
    urn: `urn:pulumi:test::slipway::${resource.type}::${name}`,
    name,
    opts,
    stackTags: new Map(),
    isType: isType(resource.type),
    asType: ((cls: unknown) =>
      isType(resource.type)(cls) ? resource.props : undefined) as ResourceValidationArgs['asType'],
    getConfig: <T extends object>() => configOf(policy, config) as T,
    notApplicable: () => {
      throw new NotApplicable();
    },
  };
  const validations = [policy.validateResource]
    .flat()
    .filter((v): v is ResourceValidation => v !== undefined);
  for (const validate of validations) {
    try {
      await validate(args, (message) => violations.push(message));
    } catch (err) {
      if (!(err instanceof NotApplicable)) throw err;
    }
  }
  return violations;
}

/** The violations a stack policy reports, with the name of the resource each is about. */
export async function stackViolations(
  policy: StackValidationPolicy,
  resources: PolicyInput[],
): Promise<{ message: string; name?: string }[]> {
  const policyResources: PolicyResource[] = resources.map((r, i) => ({
    type: r.type,
    props: r.props,
    name: r.name ?? `r${i}`,
    urn: `urn:pulumi:test::slipway::${r.type}::${r.name ?? `r${i}`}`,
    opts,
    dependencies: [],
    propertyDependencies: {},
    isType: isType(r.type),
    asType: (() => undefined) as PolicyResource['asType'],
  }));
  const violations: { message: string; name?: string }[] = [];
  await policy.validateStack(
    {
      resources: policyResources,
      stackTags: new Map(),
      getConfig: <T extends object>() => configOf(policy, {}) as T,
      notApplicable: () => {
        throw new NotApplicable();
      },
    },
    (message, urn) =>
      violations.push({ message, name: policyResources.find((r) => r.urn === urn)?.name }),
  );
  return violations;
}
