// What every route handler shares: the database, the server secret, the notifier that wakes
// long-polls, the reconciler that runs the planner, and how machines should reach us.
import type { Logger } from 'pino';
import type { Db } from '../db';
import type { Notifier } from '../notifier';
import type { Reconciler } from '../reconciler';
import type { ServerSecrets } from '../secrets';

export interface Services {
  db: Db;
  secrets: ServerSecrets;
  notifier: Notifier;
  reconciler: Reconciler;
  log: Logger;
  /** The URL machine-agents and CLIs are told to use. */
  publicUrl: string;
}
