// gRPC status codes from the kata guest as our error codes, keeping the guest's message.
import { status, type ServiceError } from '@grpc/grpc-js';
import { ErrorCode, saysExhausted, VcError } from '../../bus/errors.js';

const codes: Partial<Record<status, ErrorCode>> = {
  [status.NOT_FOUND]: ErrorCode.NotFound,
  [status.ALREADY_EXISTS]: ErrorCode.AlreadyExists,
  [status.FAILED_PRECONDITION]: ErrorCode.FailedPrecondition,
  [status.INVALID_ARGUMENT]: ErrorCode.InvalidArgument,
  [status.DEADLINE_EXCEEDED]: ErrorCode.DeadlineExceeded,
  [status.UNAVAILABLE]: ErrorCode.Unavailable,
  // A method the agent does not serve (the stock agent 1.12 has no AddInterface).
  [status.UNIMPLEMENTED]: ErrorCode.Unimplemented,
  [status.RESOURCE_EXHAUSTED]: ErrorCode.ResourceExhausted,
};


export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && 'details' in err;
}

/** A failed call as a VcError: the mapped code, and the guest's own message. */
export function fromGrpcError(err: unknown, what: string): VcError {
  if (err instanceof VcError) return err;
  if (!isServiceError(err)) return new VcError(ErrorCode.Internal, `${what}: ${err instanceof Error ? err.message : String(err)}`);
  const detail = err.details || status[err.code] || 'failed';
  const code = codes[err.code] ?? (saysExhausted(detail) ? ErrorCode.ResourceExhausted : ErrorCode.Internal);
  return new VcError(code, `${what}: ${detail}`);
}

export function grpcCode(err: unknown): status | undefined {
  return isServiceError(err) ? err.code : undefined;
}
