// Bearer tokens: a kind prefix and 32 random bytes in base64url. Only the SHA-256 hash is
// stored; lookups go by hash and the match is confirmed in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { tokenPattern, tokenPrefixes, type TokenKind } from '../common/protocol';

export function newToken(kind: TokenKind): string {
  return tokenPrefixes[kind] + randomBytes(32).toString('base64url');
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function tokenKindOf(token: string): TokenKind | undefined {
  if (!tokenPattern.test(token)) return undefined;
  const prefix = token.slice(0, 4);
  return (Object.keys(tokenPrefixes) as TokenKind[]).find((k) => tokenPrefixes[k] === prefix);
}

/** Constant-time comparison of two secrets (or their hashes). */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
