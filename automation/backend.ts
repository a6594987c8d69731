// The Pulumi backend and secrets provider of a connection's stack: a file:// backend and a
// passphrase under the agent's data directory by default (local), or an S3 bucket with a KMS
// key from configuration (AWS, both made by the connection stack).
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { StackLayout } from './layout';
import type { BackendConfig } from './stack';

export interface BackendSettings {
  /** file:// or s3:// URL; the file backend under the data directory when unset. */
  stateBackend?: string;
  /** `passphrase` or `awskms://...`. */
  secretsProvider: string;
  /** For `passphrase`: the passphrase; generated and kept in the data directory when unset. */
  statePassphrase?: string;
}

export async function resolveBackend(
  settings: BackendSettings,
  layout: StackLayout,
): Promise<BackendConfig> {
  const url = settings.stateBackend ?? pathToFileURL(layout.backendDir).href;
  if (settings.secretsProvider !== 'passphrase') {
    return { url, secretsProvider: settings.secretsProvider };
  }
  return { url, secretsProvider: 'passphrase', passphrase: await passphrase(settings, layout) };
}

async function passphrase(settings: BackendSettings, layout: StackLayout): Promise<string> {
  if (settings.statePassphrase) return settings.statePassphrase;
  if (existsSync(layout.passphraseFile)) {
    return (await readFile(layout.passphraseFile, 'utf8')).trim();
  }
  await mkdir(path.dirname(layout.passphraseFile), { recursive: true, mode: 0o700 });
  const generated = randomBytes(32).toString('base64url');
  // wx: two agents racing on one data directory must not each keep a different passphrase.
  await writeFile(layout.passphraseFile, generated, { mode: 0o600, flag: 'wx' });
  return generated;
}
