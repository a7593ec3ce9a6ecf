// Errors the supervisor reports to a guest agent, each with a code the agent maps onto its
// own protocol (gRPC status for kata, an ERROR reply for hyperstart).
export type GuestErrorCode = 'NotFound' | 'AlreadyExists' | 'FailedPrecondition' | 'InvalidArgument' | 'DeadlineExceeded' | 'Unavailable' | 'Internal';

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

export function toGuestError(err: unknown): GuestError {
  if (err instanceof GuestError) return err;
  return internal(err instanceof Error ? err.message : String(err));
}
