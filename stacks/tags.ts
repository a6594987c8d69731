// The tag keys that mark what Slipway creates in an AWS account. The agent's IAM policy, the
// fleet stacks and the policy pack all read them from here, so a key is spelled once.

export const slipwayTags = {
  /** The connection a fleet resource belongs to; the agent may only touch resources carrying it. */
  connection: 'slipway:connection',
  /** The machine id on an instance (and its root volume). */
  machine: 'slipway:machine',
  /** The volume id on a project cache volume. */
  volume: 'slipway:volume',
  /** The project a cache volume belongs to. */
  project: 'slipway:project',
  /** The Pulumi stack (project/stack) that created a connection-stack resource. */
  stack: 'slipway:stack',
  /** What part a connection-stack resource plays, e.g. `builder` on the builders' empty role. */
  role: 'slipway:role',
} as const;

export type SlipwayTagKey = (typeof slipwayTags)[keyof typeof slipwayTags];
