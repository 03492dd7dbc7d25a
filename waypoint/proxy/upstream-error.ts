/** Why an exchange with a backend failed, as the proxy maps it to a status: connect → 503, reset/protocol → 502. */
export type FailureKind = 'connect' | 'reset' | 'protocol';

export class UpstreamError extends Error {
  constructor(readonly kind: FailureKind, message: string, readonly code: string | undefined, readonly retryable: boolean) {
    super(message);
    this.name = 'UpstreamError';
  }
}
