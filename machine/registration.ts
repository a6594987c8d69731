// Registration: the machine proves who it is once, with its single-use registration token (and
// on AWS the signed instance identity document), and gets a machine token for everything after.
// The BuildKit server key is generated here and only its CSR leaves the machine.
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { ApiError } from '../common/api';
import * as pki from '../common/pki';
import { builderServerName, type MachineAgentConfig } from '../common/protocol';
import { MachineAgentError } from './errors';
import type { ControlPlane } from './control-plane';
import type { ImdsClient } from './imds';
import type { MachineIdentity, StateDir } from './state';

export interface RegistrationDeps {
  config: MachineAgentConfig;
  state: StateDir;
  controlPlane: ControlPlane;
  /** AWS only: where the identity document comes from. */
  imds?: ImdsClient;
  /** Where clients will reach BuildKit; on AWS this asks IMDS, so only when registering. */
  endpoint: () => Promise<{ host: string; port: number }>;
  agentVersion: string;
  deadlineMs: number;
  logger: Logger;
}

/** The stored identity when this state directory already registered, otherwise a registration. */
export async function ensureRegistered(deps: RegistrationDeps): Promise<MachineIdentity> {
  const { config, state, logger } = deps;
  const stored = await state.readIdentity();
  if (stored) {
    if (stored.machineId !== config.machineId) {
      throw new MachineAgentError(
        'state_mismatch',
        `the state directory ${state.dir} belongs to machine ${stored.machineId}, not ${config.machineId}; give each machine its own SLIPWAY_STATE_DIR`,
      );
    }
    logger.info({ registeredAt: stored.registeredAt }, 'already registered; resuming');
    return stored;
  }

  // The same key on every attempt: if the control plane accepted an earlier one whose answer
  // was lost (the agent killed before storing it, a cut connection), only that key lets this
  // machine register again. A key file that cannot be read is replaced.
  const endpoint = await deps.endpoint();
  const keys = await existingKey(state, logger);
  const serverName = builderServerName(config.machineId);
  const csr = await pki.createCsr(keys, {
    commonName: serverName,
    dnsNames: [serverName],
    ipAddresses: isIP(endpoint.host) ? [endpoint.host] : [],
  });
  const identity = deps.imds ? await deps.imds.instanceIdentity() : undefined;

  logger.info({ endpoint }, 'registering');
  let registered;
  try {
    registered = await deps.controlPlane.call(
      'machineRegister',
      {
        body: {
          machineId: config.machineId,
          registrationToken: config.registrationToken,
          platform: config.platform,
          endpoint,
          csr,
          agentVersion: deps.agentVersion,
          ...(identity ? { identity } : {}),
        },
      },
      {
        what: 'register with the control plane',
        deadlineMs: deps.deadlineMs,
        // SIGTERM while registering: the token may already be spent server-side, so the answer
        // (the machine token) is awaited and stored rather than lost.
        finishInFlight: true,
      },
    );
  } catch (err) {
    if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
      // The token is single-use: a used or unknown one will not get better by retrying.
      throw new MachineAgentError(
        err.code === 'already_registered' ? 'already_registered' : 'registration_refused',
        `the control plane refused to register machine ${config.machineId}: ${err.message} (${err.code}); a registration token works once, so this machine needs a new one or must be replaced`,
      );
    }
    throw err;
  }
  const result: MachineIdentity = {
    machineId: config.machineId,
    machineToken: registered.machineToken,
    apiUrl: config.apiUrl,
    healthIntervalSeconds: registered.healthIntervalSeconds,
    registeredAt: new Date().toISOString(),
  };
  await state.writeIdentity(result);
  logger.info({ healthIntervalSeconds: registered.healthIntervalSeconds }, 'registered');
  return result;
}

async function existingKey(state: StateDir, logger: Logger): Promise<pki.KeyPair> {
  const pem = await state.readServerKey().catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (pem) {
    try {
      return await pki.keyPairFromPem(pem);
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'unreadable server key; making a new one');
    }
  }
  const keys = await pki.generateKeyPair();
  await state.writeServerKey(await pki.privateKeyToPem(keys.privateKey));
  return keys;
}
