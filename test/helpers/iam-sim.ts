// Runs requests through an IAM policy simulator (@cloud-copilot/iam-simulate), which also checks
// that every action, resource ARN and condition key is one AWS defines for that action.
import { runSimulation } from '@cloud-copilot/iam-simulate';

export interface SimRequest {
  action: string;
  resource: string;
  context?: Record<string, string | string[]>;
  /** The resource's own policy (a KMS key policy, a bucket policy), when it has one. */
  resourcePolicy?: unknown;
}

export type Decision = 'Allowed' | 'Denied';

export async function decide(
  policy: unknown,
  principal: string,
  accountId: string,
  request: SimRequest,
): Promise<Decision> {
  const result = await runSimulation(
    {
      request: {
        principal,
        action: request.action,
        resource: { resource: request.resource, accountId },
        contextVariables: request.context ?? {},
      },
      identityPolicies: [{ name: 'under-test', policy }],
      resourcePolicy: request.resourcePolicy,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    },
    {},
  );
  if (result.resultType === 'error') {
    throw new Error(
      `the simulator rejected ${request.action} on ${request.resource}: ${JSON.stringify(result.errors)}`,
    );
  }
  return result.overallResult === 'Allowed' ? 'Allowed' : 'Denied';
}

/** A request is allowed only when every resource it touches is (as EC2 authorizes RunInstances). */
export async function decideAll(
  policy: unknown,
  principal: string,
  accountId: string,
  requests: SimRequest[],
): Promise<Decision> {
  for (const r of requests) {
    if ((await decide(policy, principal, accountId, r)) === 'Denied') return 'Denied';
  }
  return 'Allowed';
}
