// Sign-in with a user token: checked against the API, kept in this tab's sessionStorage only
// (gone when the tab closes, never in a cookie, never sent anywhere but the control plane).
import { tokenPattern, tokenPrefixes } from '../../common/protocol';
import { DashboardApiError, dashboardApi } from './api';
import type { Organization } from '../../common/protocol';

const storageKey = 'slipway.userToken';

export interface Session {
  token: string;
  organization: Organization;
}

export function storedToken(): string | null {
  return window.sessionStorage.getItem(storageKey);
}

/** Checks the token with the API; throws a DashboardApiError with a sentence to show. */
export async function signIn(input: string): Promise<Session> {
  const token = input.trim();
  if (!tokenPattern.test(token) || !token.startsWith(tokenPrefixes.user)) {
    throw new DashboardApiError(
      0,
      'invalid_token',
      `That is not a user token: user tokens start with ${tokenPrefixes.user} and are 47 characters long (the one "slipway login" uses works here).`,
    );
  }
  try {
    const organization = await dashboardApi(token).organization();
    window.sessionStorage.setItem(storageKey, token);
    return { token, organization };
  } catch (err) {
    if (err instanceof DashboardApiError && err.status === 401) {
      throw new DashboardApiError(
        401,
        err.code,
        'The control plane does not know this token (revoked or mistyped).',
      );
    }
    throw err;
  }
}

export function signOut(): void {
  window.sessionStorage.removeItem(storageKey);
}
