// The server secret, a 0600 file in the data directory, and what is derived from it: each
// machine's registration token (an HMAC of its id, so the desired fleet can carry it until the
// machine registers without the token ever being stored) and the key that encrypts CA keys at
// rest (AES-256-GCM).
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { tokenPrefixes } from '../common/protocol';
import { sameSecret } from './tokens';

export const serverSecretFile = 'server-secret';

export class SecretFileError extends Error {
  readonly code = 'insecure_secret_file';
}

export class ServerSecrets {
  private readonly registrationKey: Buffer;
  private readonly encryptionKey: Buffer;

  private constructor(secret: Buffer) {
    const derive = (info: string) =>
      Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), info, 32));
    this.registrationKey = derive('slipway registration tokens v1');
    this.encryptionKey = derive('slipway ca key encryption v1');
  }

  /** Reads `<dataDir>/server-secret`, creating it (0600) on first start. */
  static async load(dataDir: string): Promise<ServerSecrets> {
    const file = path.join(dataDir, serverSecretFile);
    try {
      await writeFile(file, randomBytes(32).toString('base64') + '\n', {
        mode: 0o600,
        flag: 'wx',
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const mode = (await stat(file)).mode & 0o777;
    if (mode & 0o077) {
      throw new SecretFileError(
        `${file} is readable by other users (mode ${mode.toString(8)}); run \`chmod 600 ${file}\``,
      );
    }
    const secret = Buffer.from((await readFile(file, 'utf8')).trim(), 'base64');
    if (secret.length < 32) {
      throw new SecretFileError(
        `${file} holds fewer than 32 bytes; remove it only on a new data dir`,
      );
    }
    return new ServerSecrets(secret);
  }

  registrationToken(machineId: string): string {
    const mac = createHmac('sha256', this.registrationKey).update(machineId).digest();
    return tokenPrefixes.registration + mac.toString('base64url');
  }

  verifyRegistrationToken(machineId: string, token: string): boolean {
    return sameSecret(this.registrationToken(machineId), token);
  }

  /** AES-256-GCM; `context` (e.g. the machine id) is bound as associated data. */
  encrypt(plain: Buffer, context: string): string {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.encryptionKey, nonce);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return ['v1', nonce, body, cipher.getAuthTag()]
      .map((x) => (typeof x === 'string' ? x : x.toString('base64')))
      .join('.');
  }

  decrypt(sealed: string, context: string): Buffer {
    const [version, nonce, body, tag] = sealed.split('.');
    if (version !== 'v1' || !nonce || body === undefined || !tag) {
      throw new Error('unrecognised sealed value');
    }
    const decipher = createDecipheriv(
      'aes-256-gcm',
      this.encryptionKey,
      Buffer.from(nonce, 'base64'),
    );
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(Buffer.from(tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64')), decipher.final()]);
  }
}
