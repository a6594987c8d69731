// Errors the CLI shows to people: a stable code, a sentence that says what to do, an exit code.
import { ApiError } from '../common/api';

export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** Turns an API error into words for the person at the terminal. */
export function describeApiError(err: ApiError, what: string): CliError {
  switch (err.code) {
    case 'unauthorized':
      return new CliError(
        'bad_token',
        `${what}: the control plane refused the token (${err.message}); run \`slipway login\` or set SLIPWAY_TOKEN`,
      );
    case 'unreachable':
      return new CliError(
        'unreachable',
        `${what}: ${err.message}; is the control plane running (\`slipway dev\`)?`,
      );
    default:
      return new CliError(err.code, `${what}: ${err.message}`);
  }
}
