// A small IMDSv2 client: a session token from PUT /latest/api/token, then GETs that carry it.
// The machine-agent needs the signed instance identity document (proof of which instance it runs
// on, for registration) and the instance's private address (what it advertises to clients).
import { request } from 'undici';
import type { Logger } from 'pino';
import { MachineAgentError } from './errors';
import { retrying } from './retry';

export const defaultImdsUrl = 'http://169.254.169.254';

/** IMDS allows at most six hours; the agent asks for one and renews early. */
const tokenTtlSeconds = 3600;

class ImdsHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface ImdsOptions {
  baseUrl?: string;
  logger: Logger;
  /** Per request; IMDS answers in milliseconds when it is there at all. */
  requestTimeoutMs?: number;
  /** Right after boot IMDS may not answer yet; keep trying this long. */
  deadlineMs?: number;
  signal?: AbortSignal;
}

export class ImdsClient {
  private readonly baseUrl: string;
  private token: { value: Promise<string>; renewAt: number } | undefined;

  constructor(private readonly opts: ImdsOptions) {
    this.baseUrl = (opts.baseUrl ?? defaultImdsUrl).replace(/\/+$/, '');
  }

  private async send(
    method: 'PUT' | 'GET',
    path: string,
    headers: Record<string, string>,
  ): Promise<string> {
    let res;
    try {
      res = await request(this.baseUrl + path, {
        method,
        headers,
        signal: AbortSignal.any([
          AbortSignal.timeout(this.opts.requestTimeoutMs ?? 2000),
          ...(this.opts.signal ? [this.opts.signal] : []),
        ]),
      });
    } catch (err) {
      throw new ImdsHttpError(
        0,
        `IMDS at ${this.baseUrl} did not answer: ${(err as Error).message}`,
      );
    }
    const text = await res.body.text();
    if (res.statusCode !== 200) {
      throw new ImdsHttpError(
        res.statusCode,
        `IMDS answered ${res.statusCode} to ${method} ${path}`,
      );
    }
    return text;
  }

  /** One token shared by concurrent requests, renewed a minute before IMDS would expire it. */
  private sessionToken(): Promise<string> {
    if (!this.token || performance.now() >= this.token.renewAt) {
      const value = this.send('PUT', '/latest/api/token', {
        'x-aws-ec2-metadata-token-ttl-seconds': String(tokenTtlSeconds),
      }).then((text) => text.trim());
      const token = { value, renewAt: performance.now() + (tokenTtlSeconds - 60) * 1000 };
      this.token = token;
      value.catch(() => {
        if (this.token === token) this.token = undefined;
      });
    }
    return this.token.value;
  }

  /** GET with the session token; a 401 means the token expired, so one fresh token is tried. */
  private async getOnce(path: string): Promise<string> {
    try {
      return await this.send('GET', path, {
        'x-aws-ec2-metadata-token': await this.sessionToken(),
      });
    } catch (err) {
      if (!(err instanceof ImdsHttpError) || err.status !== 401) throw err;
      this.token = undefined;
      return this.send('GET', path, { 'x-aws-ec2-metadata-token': await this.sessionToken() });
    }
  }

  async get(path: string): Promise<string> {
    return retrying(() => this.getOnce(path), {
      what: `read ${path} from the instance metadata service`,
      deadlineMs: this.opts.deadlineMs ?? 60_000,
      code: 'imds_unavailable',
      policy: { initialMs: 200, maxMs: 5000 },
      signal: this.opts.signal,
      logger: this.opts.logger,
      // Not found or forbidden will not change by asking again.
      retryable: (err) =>
        err instanceof ImdsHttpError &&
        (err.status === 0 || err.status >= 500 || err.status === 429),
    }).catch((err: unknown) => {
      if (err instanceof MachineAgentError || this.opts.signal?.aborted) throw err;
      throw new MachineAgentError('imds_unavailable', (err as Error).message);
    });
  }

  /** The identity document and its PKCS#7 (RSA-SHA256) signature, for registration. */
  async instanceIdentity(): Promise<{ document: string; signature: string }> {
    const [document, signature] = await Promise.all([
      this.get('/latest/dynamic/instance-identity/document'),
      this.get('/latest/dynamic/instance-identity/rsa2048'),
    ]);
    return { document, signature: signature.trim() };
  }

  async privateIpv4(): Promise<string> {
    return (await this.get('/latest/meta-data/local-ipv4')).trim();
  }
}
