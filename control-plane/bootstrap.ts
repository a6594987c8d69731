// The first organization and its first user token. `bootstrapOrganization` creates both and
// returns the token once (the server command prints it); `ensureDevOrganization` is the
// idempotent form for `slipway dev`: it keeps the dev token in a 0600 file in the data directory
// so a rerun on the same data directory answers with the same working token.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../common/fs';
import type { Organization } from '../common/protocol';
import { tokenPattern } from '../common/protocol';
import type { Db } from './db';
import { newId } from './ids';
import { hashToken, newToken } from './tokens';
import { organizationView } from './views';

export class OrganizationExistsError extends Error {
  readonly code = 'already_exists';
}

async function createToken(db: Db, organizationId: string, name: string): Promise<string> {
  const secret = newToken('user');
  await db('tokens').insert({
    id: newId('token'),
    organization_id: organizationId,
    kind: 'user',
    name,
    hash: hashToken(secret),
    created_at: Date.now(),
  });
  return secret;
}

/** Creates an organization and its admin token; refuses a name that exists. */
export async function bootstrapOrganization(
  db: Db,
  name: string,
): Promise<{ organization: Organization; token: string }> {
  return db.transaction(async (trx) => {
    if (await trx('organizations').where({ name }).first()) {
      throw new OrganizationExistsError(
        `organization ${name} already exists; no new token was made`,
      );
    }
    const row = { id: newId('organization'), name, created_at: Date.now() };
    await trx('organizations').insert(row);
    const token = await createToken(trx, row.id, 'admin');
    return { organization: organizationView(row), token };
  });
}

export function devTokenFile(dataDir: string, name: string): string {
  return path.join(dataDir, `dev-token-${name}`);
}

/** The organization `name` and a working user token for it, made on first use only. */
export async function ensureDevOrganization(opts: {
  db: Db;
  dataDir: string;
  name: string;
}): Promise<{ organization: Organization; token: string; created: boolean }> {
  const { db, dataDir, name } = opts;
  const file = devTokenFile(dataDir, name);
  const existing = await db('organizations').where({ name }).first();
  if (!existing) {
    const made = await bootstrapOrganization(db, name);
    await writeFileAtomic(file, made.token + '\n');
    return { ...made, created: true };
  }
  const organization = organizationView(existing);
  const saved = await readFile(file, 'utf8').then(
    (s) => s.trim(),
    () => '',
  );
  if (tokenPattern.test(saved)) {
    const row = await db('tokens')
      .where({ hash: hashToken(saved), organization_id: existing.id })
      .first();
    if (row) return { organization, token: saved, created: false };
  }
  // The saved token is gone (revoked, or the file was removed): make another.
  const token = await createToken(db, organization.id, 'dev');
  await writeFileAtomic(file, token + '\n');
  return { organization, token, created: false };
}
