// The user data an EC2 builder boots with: cloud-config that writes the machine-agent's
// configuration (the SLIPWAY_* variables of common/protocol.ts, registration token included) to
// a root-only environment file. cloud-init writes it before the image's machine-agent unit
// starts (docs/machine-agent.md), which reads it as its EnvironmentFile.
import { machineAgentEnv, type MachineAgentConfig } from '../../common/protocol';

export const machineEnvFile = '/etc/slipway/machine.env';

export type BootstrapConfig = Pick<MachineAgentConfig, 'apiUrl' | 'machineId' | 'platform'> & {
  buildkitPort: number;
  /**
   * Null once the machine has registered: its user data is never used again (the program
   * ignores user data changes), so the line is simply left out.
   */
  registrationToken: string | null;
};

/** A value safe on one line of an EnvironmentFile inside a YAML block scalar. */
function envLine(name: string, value: string): string {
  if (!/^[A-Za-z0-9_:/.@%+=,~-]*$/.test(value)) {
    throw new Error(`${name} holds characters the bootstrap cannot write safely`);
  }
  return `${name}=${value}`;
}

export function bootstrapUserData(config: BootstrapConfig): string {
  const vars: [string, string][] = [
    [machineAgentEnv.apiUrl, config.apiUrl],
    [machineAgentEnv.machineId, config.machineId],
    ...(config.registrationToken
      ? [[machineAgentEnv.registrationToken, config.registrationToken] as [string, string]]
      : []),
    [machineAgentEnv.platform, config.platform],
    [machineAgentEnv.buildkitPort, String(config.buildkitPort)],
  ];
  return [
    '#cloud-config',
    '# Slipway builder: the machine-agent configuration, read by slipway-machine-agent.service.',
    'write_files:',
    `  - path: ${machineEnvFile}`,
    "    owner: 'root:root'",
    "    permissions: '0600'",
    '    content: |',
    ...vars.map(([k, v]) => `      ${envLine(k, v)}`),
    '',
  ].join('\n');
}
