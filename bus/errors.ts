// The one place error codes are defined. Every failed reply on the bus carries one of
// these codes; clients may switch on them, so they never change meaning.

export const ErrorCode = {
  NotFound: 'NotFound',
  InvalidArgument: 'InvalidArgument',
  FailedPrecondition: 'FailedPrecondition',
  AlreadyExists: 'AlreadyExists',
  Unavailable: 'Unavailable',
  DeadlineExceeded: 'DeadlineExceeded',
  /** The agent (or guest) cannot do this at all: retrying will not help. */
  Unimplemented: 'Unimplemented',
  /**
   * The host or the guest ran out of something (a full disk, no file descriptors left):
   * nothing was made, and the same command may work once space is freed.
   */
  ResourceExhausted: 'ResourceExhausted',
  /** The server refused the subject for the caller's role (credentials and roles). */
  PermissionDenied: 'PermissionDenied',
  Internal: 'Internal',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const codes = new Set<string>(Object.values(ErrorCode));
export const isErrorCode = (value: unknown): value is ErrorCode => typeof value === 'string' && codes.has(value);

/** Whose state refused a command (ErrorInfo.refused_by). */
export type RefusedBy = 'sandbox' | 'container';

/** An error that knows its stable code, and optionally the state that refused it. */
export class VcError extends Error {
  override readonly name = 'VcError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly state?: string,
    /** Whose state that is: the sandbox's or the container's. */
    readonly refusedBy?: RefusedBy,
  ) {
    super(message);
  }

  toInfo(): { code: ErrorCode; message: string; state?: string; refusedBy?: RefusedBy } {
    const info: { code: ErrorCode; message: string; state?: string; refusedBy?: RefusedBy } = { code: this.code, message: this.message };
    if (this.state !== undefined) info.state = this.state;
    if (this.refusedBy !== undefined) info.refusedBy = this.refusedBy;
    return info;
  }
}

/** errno codes that say the system ran out of something, not that something is wrong. */
const EXHAUSTED_ERRNO = new Set(['ENOSPC', 'EDQUOT', 'EMFILE', 'ENFILE']);

/** Whether a thrown value is a system error of a resource that ran out (ENOSPC and the like). */
export const isExhaustion = (err: unknown): boolean =>
  err instanceof Error && EXHAUSTED_ERRNO.has(String((err as NodeJS.ErrnoException).code));

/**
 * Whether a guest's error text is the kernel's word for a resource that ran out: a stock
 * agent passes a full disk on as an unknown error with that text, and nothing else.
 */
export const saysExhausted = (text: string): boolean => /no space left on device|disk quota exceeded|too many open files/i.test(text);

/** Any thrown value as a VcError; unknown failures become Internal, a full disk ResourceExhausted. */
export function toVcError(err: unknown): VcError {
  if (err instanceof VcError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new VcError(isExhaustion(err) ? ErrorCode.ResourceExhausted : ErrorCode.Internal, message);
}

export const notFound = (message: string) => new VcError(ErrorCode.NotFound, message);
export const invalidArgument = (message: string) => new VcError(ErrorCode.InvalidArgument, message);
export const alreadyExists = (message: string) => new VcError(ErrorCode.AlreadyExists, message);
export const unavailable = (message: string) => new VcError(ErrorCode.Unavailable, message);
export const deadlineExceeded = (message: string) => new VcError(ErrorCode.DeadlineExceeded, message);
export const unimplemented = (message: string) => new VcError(ErrorCode.Unimplemented, message);
export const resourceExhausted = (message: string) => new VcError(ErrorCode.ResourceExhausted, message);
export const permissionDenied = (message: string) => new VcError(ErrorCode.PermissionDenied, message);
export const failedPrecondition = (message: string, state?: string, refusedBy?: RefusedBy) =>
  new VcError(ErrorCode.FailedPrecondition, message, state, refusedBy);
