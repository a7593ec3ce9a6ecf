// The one client of the runtime's commands, for the CLI, the tests, the benchmarks and
// anyone else: typed by the command table, it builds the subject, encodes the request,
// and turns the reply envelope (or a NATS failure) into a value or a CommandError.
import { createInbox, errors as natsErrors, headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { decodeTrusted, encode } from './codec.js';
import { commands, routeOf, subjectOf, type CommandDef, type CommandName, type CommandParams, type CommandReply, type CommandRequest } from './commands.js';
import { connectBus, identityOf, permissionError, type ConnectOptions } from './connection.js';
import { mintCreds, type CredsIdentity } from './credentials.js';
import { ErrorCode } from './errors.js';
import { BusHealth } from './health.js';
import type { CredsCreateReply, CredsCreateRequest, ErrorInfo, SandboxStatus } from './messages.gen.js';
import { readEvents, type ReadOptions, type StoredEvent } from './event-reader.js';
import { Replies } from './replies.js';
import type { Role } from './roles.js';
import { HOST_PATTERN, RETRY_HEADER, srvSubjects, subjects, type SrvVerb } from './subjects.js';
import { hostOf } from './service-discovery.js';

/** A command that failed: the runtime's error code (or Unavailable / DeadlineExceeded from NATS itself). */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly code: string,
    message: string,
    /** The state that refused it, for FailedPrecondition. */
    readonly state?: string,
    /** Whose state that is: "sandbox" or "container". */
    readonly refusedBy?: string,
  ) {
    super(message);
  }

  toInfo(): ErrorInfo {
    const info: ErrorInfo = { code: this.code, message: this.message };
    if (this.state !== undefined) info.state = this.state;
    if (this.refusedBy !== undefined) info.refusedBy = this.refusedBy;
    return info;
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

/**
 * After this long without a reply, the client asks whether any host is there at all,
 * and tries a command that allows it once more through the first host that answers.
 */
const HOST_PROBE_AFTER_MS = 750;
const HOST_PROBE_WAIT_MS = 500;

/**
 * Whether a command may be sent twice: one that changes nothing, or one about a sandbox
 * (its owner drops a second try of what it runs: bus/retries.ts). Not a create or a
 * forget (which hosts would both carry out), nor one addressed to a host (the same host).
 */
const mayRetry = (def: CommandDef) => routeOf(def) === 'sandbox' || (routeOf(def) === 'any' && !def.changesState);

export class VcClient {
  /** Whether the connection is up: while it is not, a request fails at once rather than waiting out its timeout. */
  private readonly health: BusHealth;
  /** Replies come on one subscription (bus/replies.ts): a request costs no timer or stack trace of its own. */
  private readonly replies: Replies;
  /**
   * The host probe under way, shared by every request that waits long enough to need one:
   * a probe each would send thousands of PINGs to a host that is slow because it is busy.
   */
  private probe: { at: number; found: Promise<Array<Record<string, unknown>>> } | undefined;

  constructor(
    readonly nc: NatsConnection,
    readonly timeoutMs = 60_000,
    /** Whom the credentials speak for, to say what a refusal refused to whom. */
    readonly identity?: CredsIdentity,
  ) {
    this.health = new BusHealth(nc);
    this.replies = Replies.for(nc);
  }

  static async connect(opts: ClientOptions): Promise<VcClient> {
    return new VcClient(await connectBus({ name: 'virtactors-client', ...opts }), opts.timeoutMs, identityOf(opts.creds));
  }

  /** Runs a command; resolves with its reply, or rejects with a CommandError. */
  async call<C extends CommandName>(name: C, params: CommandParams<C>, request?: CommandRequest<C>, opts?: CallOptions): Promise<CommandReply<C>> {
    const reply = await this.request(name, params, request, opts);
    if (reply.ok === false) {
      const e = (reply as { error: ErrorInfo }).error;
      throw new CommandError(e.code ?? ErrorCode.Internal, e.message ?? 'unknown error', e.state, e.refusedBy);
    }
    return reply as CommandReply<C>;
  }

  /**
   * Every sandbox (of every host, or of `host`), page after page: a list reply holds as
   * many as one bus message does, and names where the next page starts.
   */
  async listSandboxes(request: { host?: string } = {}, opts?: CallOptions): Promise<SandboxStatus[]> {
    const all: SandboxStatus[] = [];
    for (let after: string | undefined; ; ) {
      const reply = await this.call('SandboxList', {}, { ...request, ...(after ? { after } : {}) }, opts);
      all.push(...(reply.sandboxes ?? []));
      if (!reply.next) return all;
      after = reply.next;
    }
  }

  /**
   * Runs a command and returns the reply as it came, failures included. `request` may be
   * raw bytes (to send what no typed caller would: malformed bodies). NATS failures still
   * reject, as CommandErrors.
   */
  async request<C extends CommandName>(name: C, params: CommandParams<C>, request?: CommandRequest<C> | Uint8Array, opts?: CallOptions): Promise<Outcome<C>> {
    const data = request instanceof Uint8Array ? request : encode(request ?? {});
    return (await this.send(subjectOf(name, params), data, opts, mayRetry(commands[name]))) as Outcome<C>;
  }

  /**
   * A request to any subject, its reply envelope decoded: for tools and tests that probe
   * subjects outside the command table (commands go through call or request).
   */
  requestSubject(subject: string, data: Uint8Array, opts?: CallOptions): Promise<{ ok?: boolean; error?: ErrorInfo; [field: string]: unknown }> {
    return this.send(subject, data, opts, false);
  }

  private async send(subject: string, data: Uint8Array, opts: CallOptions | undefined, retry: boolean): Promise<{ ok?: boolean; error?: ErrorInfo; [field: string]: unknown }> {
    const timeout = opts?.timeoutMs ?? this.timeoutMs;
    if (!this.health.isConnected) throw new CommandError(ErrorCode.Unavailable, `${subject}: not connected to NATS (reconnecting); try again when it is back`);
    const sent = performance.now();
    // Across the accounts of a server with authentication a request nobody serves gets
    // no "no responders": it would wait out its timeout. Ask the hosts after a while.
    // A stopped host still holds its place in the queue group: the first try may wait
    // in its socket, so a command that allows it goes once more, to a host that answers
    // (a stopped one does not); whichever reply comes first is the answer.
    let probe: ReturnType<typeof setTimeout> | undefined;
    let answered = false;
    const later = new Promise<Msg>((resolve, reject) => {
      probe = setTimeout(() => {
        void this.findHosts().then((found) => {
          if (!found.length) return reject(noHostError(subject));
          const left = timeout - (performance.now() - sent);
          const host = hostOf(found[0]!);
          if (answered || !retry || left <= 0 || !HOST_PATTERN.test(host)) return;
          const h = headers();
          h.set(RETRY_HEADER, String(Math.round(performance.now() - sent)));
          this.replies.request(subjects.hostVia(host, subject), data, left, h).then(resolve, () => {});
        }, () => {});
      }, Math.min(HOST_PROBE_AFTER_MS, timeout));
    });
    later.catch(() => {});
    const pending = this.replies.request(subject, data, timeout);
    pending.catch(() => {});
    try {
      return decodeTrusted((await Promise.race([pending, later])).data);
    } catch (err) {
      throw fromNatsError(err, subject, timeout, this.identity);
    } finally {
      answered = true;
      clearTimeout(probe);
    }
  }

  /** Hosts that answer a PING: the probe under way or just done, else a new one. */
  private findHosts(): Promise<Array<Record<string, unknown>>> {
    const now = performance.now();
    if (!this.probe || now - this.probe.at > HOST_PROBE_WAIT_MS) this.probe = { at: now, found: this.discover('PING', HOST_PROBE_WAIT_MS, () => true) };
    return this.probe.found;
  }

  /** Signs a user of a role (operators only) and returns its `.creds` file; the seed is made here. */
  async createCreds(role: Role, name: string): Promise<string> {
    return mintCreds(async (publicKey) => {
      const body: CredsCreateRequest = { role, name, publicKey };
      const reply = (await this.requestSubject(subjects.credsCreate(), encode(body))) as CredsCreateReply & { error?: ErrorInfo };
      if (!reply.ok) throw new CommandError(reply.error?.code ?? ErrorCode.Internal, reply.error?.message ?? 'unknown error');
      return reply.jwt ?? '';
    });
  }

  /** Stored events, in order; see readEvents. */
  events(opts: ReadOptions = {}): AsyncGenerator<StoredEvent> {
    return readEvents(this.nc, opts);
  }

  /**
   * Every runtime host's answer to a $SRV verb, gathered for `waitMs`, or until an answer
   * satisfies `until` (then at once).
   */
  async discover(verb: SrvVerb, waitMs = 1000, until?: (answer: Record<string, unknown>) => boolean): Promise<Array<Record<string, unknown>>> {
    const inbox = createInbox();
    const sub = this.nc.subscribe(inbox);
    const [subject] = srvSubjects(verb, '');
    this.nc.publish(subject!, new Uint8Array(), { reply: inbox });
    const timer = setTimeout(() => sub.unsubscribe(), waitMs);
    const found: Array<Record<string, unknown>> = [];
    for await (const m of sub) {
      // With no service subscribed, the server answers the inbox with an empty
      // no-responders status (503): that is no host, not an answer.
      if (m.data.length === 0) continue;
      const answer = decodeTrusted<Record<string, unknown>>(m.data);
      found.push(answer);
      if (until?.(answer)) sub.unsubscribe();
    }
    clearTimeout(timer);
    return found;
  }

  async close(): Promise<void> {
    await this.nc.drain().catch(() => {});
  }
}

const noHostError = (subject: string) =>
  new CommandError(ErrorCode.Unavailable, `no runtime host answers ${subject}: none runs (is \`npm start\` running?), or every one is too busy to answer in time`);

/** A failure of the request itself, in the runtime's vocabulary. */
export function fromNatsError(err: unknown, subject: string, timeoutMs: number, who?: CredsIdentity): CommandError {
  if (err instanceof CommandError) return err;
  const denied = permissionError(err, who);
  if (denied) return new CommandError(denied.code, denied.message);
  if (err instanceof natsErrors.NoRespondersError || (err instanceof natsErrors.RequestError && err.isNoResponders())) return noHostError(subject);
  if (err instanceof natsErrors.TimeoutError || (err instanceof natsErrors.RequestError && err.cause instanceof natsErrors.TimeoutError)) {
    return new CommandError(ErrorCode.DeadlineExceeded, `no reply to ${subject} within ${timeoutMs} ms`);
  }
  return new CommandError(ErrorCode.Unavailable, `${subject}: ${err instanceof Error ? err.message : String(err)}`);
}
