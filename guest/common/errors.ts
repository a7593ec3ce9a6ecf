// Errors the supervisor reports to a guest agent, each with a code the agent maps onto its
// own protocol (gRPC status for kata, an ERROR reply for hyperstart).
export type GuestErrorCode = 'NotFound' | 'AlreadyExists' | 'FailedPrecondition' | 'InvalidArgument' | 'DeadlineExceeded' | 'Unavailable' | 'ResourceExhausted' | 'Internal';

export class GuestError extends Error {
  override readonly name = 'GuestError';
  constructor(
    readonly code: GuestErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const notFound = (message: string) => new GuestError('NotFound', message);
export const alreadyExists = (message: string) => new GuestError('AlreadyExists', message);
export const failedPrecondition = (message: string) => new GuestError('FailedPrecondition', message);
export const invalidArgument = (message: string) => new GuestError('InvalidArgument', message);
export const deadlineExceeded = (message: string) => new GuestError('DeadlineExceeded', message);
export const internal = (message: string) => new GuestError('Internal', message);

/** errno codes of a resource that ran out (a full disk, no descriptors left): freeing it may help. */
const EXHAUSTED_ERRNO = new Set(['ENOSPC', 'EDQUOT', 'EMFILE', 'ENFILE']);

/** A failure of `cause`, said as `message`: ResourceExhausted when the system ran out of something, else Internal. */
export function failure(message: string, cause: unknown): GuestError {
  if (cause instanceof GuestError) return cause;
  const errno = cause instanceof Error ? String((cause as NodeJS.ErrnoException).code) : '';
  return new GuestError(EXHAUSTED_ERRNO.has(errno) ? 'ResourceExhausted' : 'Internal', message);
}

export function toGuestError(err: unknown): GuestError {
  return failure(err instanceof Error ? err.message : String(err), err);
}
