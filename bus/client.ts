// The one client of the runtime's commands, for the CLI, the tests, the benchmarks and
// anyone else: typed by the command table, it builds the subject, encodes the request,
// and turns the reply envelope (or a NATS failure) into a value or a CommandError.
import { createInbox, errors as natsErrors, type NatsConnection } from '@nats-io/transport-node';
import { decodeTrusted, encode } from './codec.js';
import { subjectOf, type CommandName, type CommandParams, type CommandReply, type CommandRequest } from './commands.js';
import { connectBus, type ConnectOptions } from './connection.js';
import { ErrorCode } from './errors.js';
import type { ErrorInfo } from './messages.gen.js';
import { readEvents, type ReadOptions, type StoredEvent } from './event-reader.js';
import { srvSubjects, type SrvVerb } from './subjects.js';

/** A command that failed: the runtime's error code (or Unavailable / DeadlineExceeded from NATS itself). */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly code: string,
    message: string,
    /** The state that refused it, for FailedPrecondition. */
    readonly state?: string,
  ) {
    super(message);
  }

  toInfo(): ErrorInfo {
    return this.state === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, state: this.state };
  }
}

/** A reply as it came, for callers that look at failures rather than catch them. */
export type Outcome<C extends CommandName> = CommandReply<C> & { ok?: boolean; error?: ErrorInfo };

export interface CallOptions {
  /** How long to wait for the reply, in ms (default: the client's). */
  timeoutMs?: number;
}

export interface ClientOptions extends ConnectOptions {
  /** Default reply timeout, in ms. */
  timeoutMs?: number;
}

export class VcClient {
  constructor(
    readonly nc: NatsConnection,
    readonly timeoutMs = 60_000,
  ) {}

  static async connect(opts: ClientOptions): Promise<VcClient> {
    return new VcClient(await connectBus({ name: 'virtactors-client', ...opts }), opts.timeoutMs);
  }

  /** Runs a command; resolves with its reply, or rejects with a CommandError. */
  async call<C extends CommandName>(name: C, params: CommandParams<C>, request?: CommandRequest<C>, opts?: CallOptions): Promise<CommandReply<C>> {
    const reply = await this.request(name, params, request, opts);
    if (reply.ok === false) {
      const e = (reply as { error: ErrorInfo }).error;
      throw new CommandError(e.code ?? ErrorCode.Internal, e.message ?? 'unknown error', e.state);
    }
    return reply as CommandReply<C>;
  }

  /**
   * Runs a command and returns the reply as it came, failures included. `request` may be
   * raw bytes (to send what no typed caller would: malformed bodies). NATS failures still
   * reject, as CommandErrors.
   */
  async request<C extends CommandName>(name: C, params: CommandParams<C>, request?: CommandRequest<C> | Uint8Array, opts?: CallOptions): Promise<Outcome<C>> {
    const data = request instanceof Uint8Array ? request : encode(request ?? {});
    return (await this.requestSubject(subjectOf(name, params), data, opts)) as Outcome<C>;
  }

  /**
   * A request to any subject, its reply envelope decoded: for tools and tests that probe
   * subjects outside the command table (commands go through call or request).
   */
  async requestSubject(subject: string, data: Uint8Array, opts?: CallOptions): Promise<{ ok?: boolean; error?: ErrorInfo; [field: string]: unknown }> {
    const timeout = opts?.timeoutMs ?? this.timeoutMs;
    try {
      return decodeTrusted((await this.nc.request(subject, data, { timeout })).data);
    } catch (err) {
      throw fromNatsError(err, subject, timeout);
    }
  }

  /** Stored events, in order; see readEvents. */
  events(opts: ReadOptions = {}): AsyncGenerator<StoredEvent> {
    return readEvents(this.nc, opts);
  }

  /** Every runtime host's answer to a $SRV verb, gathered for `waitMs`. */
  async discover(verb: SrvVerb, waitMs = 1000): Promise<Array<Record<string, unknown>>> {
    const inbox = createInbox();
    const sub = this.nc.subscribe(inbox);
    const [subject] = srvSubjects(verb, '');
    this.nc.publish(subject!, new Uint8Array(), { reply: inbox });
    const timer = setTimeout(() => sub.unsubscribe(), waitMs);
    const found: Array<Record<string, unknown>> = [];
    for await (const m of sub) found.push(decodeTrusted(m.data));
    clearTimeout(timer);
    return found;
  }

  async close(): Promise<void> {
    await this.nc.drain().catch(() => {});
  }
}

/** A failure of the request itself, in the runtime's vocabulary. */
export function fromNatsError(err: unknown, subject: string, timeoutMs: number): CommandError {
  if (err instanceof natsErrors.RequestError && err.isNoResponders()) {
    return new CommandError(ErrorCode.Unavailable, `no runtime host answers ${subject} (is \`npm start\` running?)`);
  }
  if (err instanceof natsErrors.TimeoutError || (err instanceof natsErrors.RequestError && err.cause instanceof natsErrors.TimeoutError)) {
    return new CommandError(ErrorCode.DeadlineExceeded, `no reply to ${subject} within ${timeoutMs} ms`);
  }
  if (err instanceof natsErrors.PermissionViolationError) {
    return new CommandError('PermissionDenied', `permission denied: ${err.message}`);
  }
  return new CommandError(ErrorCode.Unavailable, `${subject}: ${err instanceof Error ? err.message : String(err)}`);
}
