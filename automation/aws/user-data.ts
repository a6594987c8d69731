// The bootstrap an EC2 builder runs at first boot: it writes the machine-agent's configuration
// (the SLIPWAY_* variables of common/protocol.ts, registration token included) to a root-only
// environment file and starts the machine-agent unit the builder image ships.
import { machineAgentEnv, type MachineAgentConfig } from '../../common/protocol';

/** Read by the machine-agent's systemd unit (EnvironmentFile=) in the builder image. */
export const machineEnvFile = '/etc/slipway/machine.env';
export const machineAgentUnit = 'slipway-machine-agent.service';
/** Where the machine-agent keeps its key, token and certificates on a builder. */
export const builderStateDir = '/var/lib/slipway/machine';

export type BootstrapConfig = Pick<MachineAgentConfig, 'apiUrl' | 'machineId' | 'platform'> & {
  buildkitPort: number;
  /**
   * Null once the machine has registered: its user data is then never run again (the program
   * ignores user data changes), so the line is simply left out.
   */
  registrationToken: string | null;
};

/** A value safe on one line of an EnvironmentFile and inside a quoted here-document. */
function envLine(name: string, value: string): string {
  if (!/^[A-Za-z0-9_:/.@%+=,~-]*$/.test(value)) {
    throw new Error(`${name} holds characters the bootstrap cannot write safely`);
  }
  return `${name}=${value}`;
}

export function bootstrapScript(config: BootstrapConfig): string {
  const vars: [string, string][] = [
    [machineAgentEnv.apiUrl, config.apiUrl],
    [machineAgentEnv.machineId, config.machineId],
    ...(config.registrationToken
      ? [[machineAgentEnv.registrationToken, config.registrationToken] as [string, string]]
      : []),
    [machineAgentEnv.provider, 'aws'],
    [machineAgentEnv.platform, config.platform],
    [machineAgentEnv.stateDir, builderStateDir],
    [machineAgentEnv.buildkitPort, String(config.buildkitPort)],
  ];
  return [
    '#!/bin/bash',
    '# Slipway builder bootstrap: configure and start the machine-agent.',
    'set -euo pipefail',
    'umask 077',
    `install -d -m 0700 ${machineEnvFile.slice(0, machineEnvFile.lastIndexOf('/'))}`,
    `cat > ${machineEnvFile} <<'SLIPWAY_ENV'`,
    ...vars.map(([k, v]) => envLine(k, v)),
    'SLIPWAY_ENV',
    `chmod 0600 ${machineEnvFile}`,
    `systemctl enable --now ${machineAgentUnit}`,
    '',
  ].join('\n');
}
