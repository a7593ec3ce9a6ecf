// A gRPC connection to one kata guest agent, with typed calls. Addresses: unix://<path>,
// a bare path, or tcp://<host>:<port>. Dialing retries (with a short backoff: a guest that
// is still starting should be reached as soon as it listens) until the dial timeout.
import { connect } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, credentials, Metadata, type CallOptions, type ChannelOptions, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { invalidArgument, unavailable } from '../../bus/errors.js';
import { abortReason } from './calls.js';
import {
  agentService,
  healthService,
  PID_TRAILER,
  type AgentMethod,
  type AgentServiceMethods,
  type HealthMethod,
  type HealthMethods,
} from '../../protos/kata/index.js';
import { fromGrpcError } from './grpc-status.js';

export type AgentRequest<M extends AgentMethod> = AgentServiceMethods[M]['request'];
export type AgentResponse<M extends AgentMethod> = AgentServiceMethods[M]['response'];

export interface CallResult<T> {
  response: T;
  trailers: Metadata;
}

const DIAL_PROBE_MS = 2;

const channelOptions: ChannelOptions = {
  'grpc.initial_reconnect_backoff_ms': 10,
  'grpc.min_reconnect_backoff_ms': 10,
  'grpc.max_reconnect_backoff_ms': 25,
  'grpc.enable_retries': 0,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
};

/** The gRPC target of an agent address. */
export function grpcTarget(address: string): string {
  if (address.startsWith('tcp://')) {
    const hostPort = address.slice('tcp://'.length);
    if (!/^[^/]+:\d+$/.test(hostPort)) throw invalidArgument(`kata agent address ${address}: expected tcp://<host>:<port>`);
    return hostPort;
  }
  if (address.startsWith('vsock:')) throw invalidArgument(`kata agent address ${address}: vsock is not supported by this runtime`);
  const path = address.startsWith('unix://') ? address.slice('unix://'.length) : address;
  if (!path) throw invalidArgument(`kata agent address ${JSON.stringify(address)} is empty`);
  return `unix://${resolvePath(path)}`;
}

/** The pid our guest agent puts in the trailers of StartContainer and ExecProcess; undefined when absent (a stock agent). */
export function pidFrom(trailers: Metadata): number | undefined {
  const value = trailers.get(PID_TRAILER)[0];
  if (value === undefined) return undefined;
  const pid = Number(typeof value === 'string' ? value : value.toString());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

export class KataConnection {
  private readonly client: Client;
  private closed = false;

  constructor(
    readonly address: string,
    private readonly dialTimeoutMs: number,
  ) {
    this.client = new Client(grpcTarget(address), credentials.createInsecure(), channelOptions);
  }

  /** Resolves once connected; retries until the dial timeout, then fails with Unavailable. */
  async ready(timeoutMs = this.dialTimeoutMs, retry = true, abort?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    if (!(await this.socketAccepts(retry ? deadline : 0, abort))) {
      if (abort?.aborted) throw abortReason(abort, `dialing the kata agent at ${this.address}`);
      throw unavailable(
        retry
          ? `cannot reach the kata agent at ${this.address} within ${timeoutMs} ms: its socket accepts no connection`
          : `the kata agent's socket at ${this.address} refuses connections`,
      );
    }
    return new Promise((resolve, reject) => {
      this.client.waitForReady(deadline, (err) => {
        if (!err) return resolve();
        if (abort?.aborted) return reject(abortReason(abort, `dialing the kata agent at ${this.address}`));
        reject(unavailable(`cannot reach the kata agent at ${this.address} within ${timeoutMs} ms: ${err.message}`));
      });
    });
  }

  /**
   * A guest that is still starting has no socket yet: probing it every few milliseconds
   * finds it as soon as it listens, sooner than gRPC's reconnect backoff would. Without
   * a deadline it probes once (a health check must not wait for a socket that is gone).
   * False when the socket never accepted; true for non-unix addresses (gRPC dials those).
   */
  private async socketAccepts(deadline: number, abort?: AbortSignal): Promise<boolean> {
    const target = grpcTarget(this.address);
    if (!target.startsWith('unix://')) return true;
    const path = target.slice('unix://'.length);
    do {
      const ok = await new Promise<boolean>((resolve) => {
        const sock = connect(path);
        sock.once('connect', () => {
          sock.destroy();
          resolve(true);
        });
        sock.once('error', () => resolve(false));
      });
      if (ok) return true;
      if (Date.now() >= deadline || abort?.aborted) return false;
      await sleep(DIAL_PROBE_MS);
    } while (Date.now() < deadline);
    return false;
  }

  /**
   * One AgentService call; `deadlineMs` undefined means no deadline of its own (blocking
   * calls). An abort cancels the call on the wire, so the guest stops working on it.
   */
  call<M extends AgentMethod>(method: M, request: AgentRequest<M>, deadlineMs?: number, abort?: AbortSignal): Promise<CallResult<AgentResponse<M>>> {
    const def = agentService[method];
    return this.unary(def.path, def.requestSerialize, def.responseDeserialize, request, deadlineMs, `${method}`, abort);
  }

  health<M extends HealthMethod>(method: M, request: HealthMethods[M]['request'], deadlineMs?: number, abort?: AbortSignal): Promise<HealthMethods[M]['response']> {
    const def = healthService[method];
    return this.unary(def.path, def.requestSerialize, def.responseDeserialize, request, deadlineMs, `Health.${method}`, abort).then((r) => r.response);
  }

  private unary<Req, Res>(
    path: string,
    serialize: (value: Req) => Buffer,
    deserialize: (bytes: Buffer) => Res,
    request: Req,
    deadlineMs: number | undefined,
    what: string,
    abort: AbortSignal | undefined,
  ): Promise<CallResult<Res>> {
    if (this.closed) return Promise.reject(unavailable(`${what}: the connection to ${this.address} is closed`));
    if (abort?.aborted) return Promise.reject(abortReason(abort, what));
    const options: CallOptions = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
    return new Promise((resolve, reject) => {
      let outcome: { err: ServiceError | null; value: Res | undefined } | undefined;
      const call = this.client.makeUnaryRequest(path, serialize, deserialize, request, new Metadata(), options, (err, value) => {
        outcome = { err, value };
      });
      const onAbort = () => call.cancel();
      abort?.addEventListener('abort', onAbort, { once: true });
      // The status (with the trailers) follows the callback in the same turn.
      call.on('status', (s: StatusObject) => {
        abort?.removeEventListener('abort', onAbort);
        if (abort?.aborted) return reject(abortReason(abort, what));
        if (!outcome || outcome.err) return reject(fromGrpcError(outcome?.err ?? s, what));
        resolve({ response: outcome.value as Res, trailers: s.metadata });
      });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }
}
