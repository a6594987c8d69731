// runCloudAgent: the cloud-agent of one connection. A sync loop keeps the lease and long-polls
// the desired fleet; a reconciler converges it through automation/. They run side by side, so
// the lease is renewed and new fleets are picked up while an update runs.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { ApiClient } from '../common/api';
import type { CloudAgentConfig } from '../common/protocol';
import { version as agentVersion } from '../package.json';
import { FleetReconciler } from './reconciler';
import { AgentStateStore } from './state';
import { Syncer } from './syncer';

export { agentVersion };

export interface RunOptions {
  signal: AbortSignal;
  logger: Logger;
}

/** How long a stopping agent tries to deliver its last reports. */
const finalSyncMs = 5000;

export async function runCloudAgent(config: CloudAgentConfig, opts: RunOptions): Promise<void> {
  const { logger } = opts;
  const store = await AgentStateStore.open(config.dataDir);
  const api = new ApiClient({
    baseUrl: config.apiUrl,
    token: config.connectionToken,
    userAgent: `slipway-cloud-agent/${agentVersion}`,
    ...(config.controlPlaneCaFile ? { ca: await readFile(config.controlPlaneCaFile, 'utf8') } : {}),
  });
  // Stops both loops when either fails for good, or when the caller stops the agent.
  const stop = new AbortController();
  const onStop = () => stop.abort(opts.signal.reason);
  opts.signal.addEventListener('abort', onStop, { once: true });

  const reconciler = new FleetReconciler({
    config,
    store,
    logger,
    // Called only once the loops run, when `syncer` exists.
    onReport: () => syncer.kick(),
  });
  const syncer: Syncer = new Syncer({
    api,
    store,
    agentVersion,
    observe: () => reconciler.observe(),
    onFleet: (held) => reconciler.setDesired(held),
    onLeaseLost: () => reconciler.leaseLost(),
    logger,
  });
  logger.info({ agentId: store.agentId, version: agentVersion }, 'cloud-agent starting');
  const stopOnFailure = <T>(p: Promise<T>) =>
    p.catch((err: unknown) => {
      stop.abort(err);
      throw err;
    });
  try {
    const results = await Promise.allSettled([
      stopOnFailure(syncer.run(stop.signal)),
      stopOnFailure(reconciler.run(stop.signal)),
    ]);
    const failure = results.find((r) => r.status === 'rejected');
    if (failure) throw failure.reason;
  } finally {
    opts.signal.removeEventListener('abort', onStop);
    if (store.hasPending()) {
      // Deliver the last reports (a cancelled update's, say) before going.
      await syncer.syncOnce(AbortSignal.timeout(finalSyncMs), 0).catch((err: unknown) => {
        logger.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'last reports kept for the next start',
        );
      });
    }
    await api.close();
    logger.info('cloud-agent stopped');
  }
}
