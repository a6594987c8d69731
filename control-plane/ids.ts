// Resource ids: a kind prefix and random base62 (protocol.ts idSchema), e.g. `mch_4f9Kx...`.
import { randomBytes } from 'node:crypto';
import { idPrefixes, idSchema, type IdKind } from '../common/protocol';

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const idLength = 20;

export function newId(kind: IdKind): string {
  let out = '';
  while (out.length < idLength) {
    for (const byte of randomBytes(32)) {
      // 248 = 4 * 62: rejecting the rest keeps every character equally likely.
      if (byte < 248 && out.length < idLength) out += alphabet[byte % 62];
    }
  }
  return `${idPrefixes[kind]}_${out}`;
}

export function isId(kind: IdKind, value: string): boolean {
  return idSchema(kind).safeParse(value).success;
}
