// The Slipway policy pack: `pulumi preview --policy-pack stacks/policy` on the connection stack
// or a fleet stack checks every resource against the promises in rules.ts.
import { PolicyPack } from '@pulumi/policy';
import { slipwayPolicies } from './rules';

new PolicyPack('slipway', {
  description: "Slipway's promises for what it creates in an AWS account",
  enforcementLevel: 'mandatory',
  policies: slipwayPolicies,
});
