// The command service: every command of the table (bus/commands.gen.ts) served over
// request/reply, the envelope ({ok: true, ...} or {ok: false, error}), and routing to the
// host that owns a sandbox.
//
// Two subscriptions per host cover every command: the public subjects (queue group, so
// one host takes each request) and the host's own subjects (commands addressed to it,
// and commands other hosts forward to it). A host that receives a command for a sandbox
// it does not hold forwards it to the owner named in the KV directory, with the client's
// reply subject in a header: the owner answers the client directly. (The reply cannot
// ride as the forwarded message's own reply: a client's request reaches the hosts'
// account with a reply the server reserves for itself, `_R_.…`, which no connection may
// set as a reply.) Each subscription costs memory on every server of a cluster, so there
// is none per sandbox or per command. Each command still has its own ADR-32 endpoint.
//
// A host that is dead, stopped or cut off must not leave its sandboxes' clients
// waiting (docs/reattach.md, "A host that does not answer"): the forward is a request
// whose reply is the owner's receipt, sent before anything else, so a forwarder that
// gets none within FORWARD_RECEIPT_MS (or hears that nobody listens there) answers
// Unavailable naming the host. A command read right after this host's own loop stood
// still (bus/stall.ts) is refused, not run late: its sender has answered or tried
// elsewhere. A client's second try (RETRY_HEADER) of a command this host is running or
// just ran is dropped (bus/retries.ts).
import { headers, NoRespondersError, TimeoutError, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { decode, encode, MAX_PAYLOAD_BYTES } from './codec.js';
import { commandTable, endpointName, routeOf, type CommandDef, type CommandName, type CommandParams, type CommandRequest, type ReplyBody } from './commands.js';
import { ErrorCode, invalidArgument, notFound, toVcError, unavailable, type VcError } from './errors.js';
import type { SandboxStore } from './store.js';
import { commandFilter, commandSubject, commandTail, QUEUE_GROUP, RETRY_HEADER, subjects, SubjectMatcher } from './subjects.js';
import type { EndpointInfo } from './service-discovery.js';
import { lostStatus, type LostHost } from './liveness.js';
import { busUnavailable } from './health.js';
import { LoopStall } from './stall.js';
import { RecentCommands } from './retries.js';
import { Replies } from './replies.js';

/** One command as its handler sees it: decoded, with its deadline. */
export interface CommandCall<C extends CommandName> {
  name: C;
  params: CommandParams<C>;
  request: CommandRequest<C>;
  /** When the reply is due (ms since the epoch): the request's timeoutMs, or the host's default. */
  deadline: number;
  /** Aborts when the host stops serving. */
  signal: AbortSignal;
}

/** A handler for every command of the table: the compiler checks none is missing. */
export type CommandHandlers = { [C in CommandName]: (call: CommandCall<C>) => Promise<ReplyBody<C>> };

export interface CommandServiceOptions {
  host: string;
  /** Whether this host holds the sandbox's actor. */
  owns(sandboxId: string): boolean;
  /** Deadline of a command whose request names none, in ms. */
  defaultDeadlineMs: number;
  /** Why a host cannot be reached now (lost, or silent), or undefined (see bus/liveness.ts). */
  unreachable?(host: string): string | undefined;
  /** When this host last saw another's heartbeat, for saying since when it is silent. */
  lastBeat?(host: string): string | undefined;
  /** A lost host's entry, for answering `status` of its sandboxes without it. */
  lost?(host: string): LostHost | undefined;
  /** Why nothing can be stored now (bus/health.ts): commands that change state are refused at once. */
  busDown?(): string | undefined;
  /** Told of every command this host served: its name, OK or the error code, and how long it took. */
  observe?(command: string, code: string, seconds: number): void;
}

/** ADR-32 error codes (HTTP-like numbers) for the Nats-Service-Error-Code header. */
const SERVICE_ERROR_NUMBER: Record<ErrorCode, number> = {
  InvalidArgument: 400,
  NotFound: 404,
  AlreadyExists: 409,
  FailedPrecondition: 409,
  Internal: 500,
  Unavailable: 503,
  DeadlineExceeded: 504,
  Unimplemented: 501,
  ResourceExhausted: 507,
  PermissionDenied: 403,
};

/** Header of a forwarded command: where the owner host sends the reply. */
export const FORWARDED_REPLY_HEADER = 'Vc-Reply-To';

/** How long a forwarder waits for the owner's receipt before answering Unavailable. */
export const FORWARD_RECEIPT_MS = 750;
/**
 * A command read after the loop stood still this long is refused. Below the receipt
 * time (a receipt sent is always in time) and the client's second try (bus/client.ts).
 */
export const STALE_AFTER_MS = 400;
/** How long a finished command is remembered for a client's second try of it. */
const RETRY_WINDOW_MS = 10_000;
/** A second try matches a first that began up to this long before the client says it sent it (the second try's way here). */
const RETRY_SLACK_MS = 250;
/** A first try that ended this recently still answers the client (its reply is on its way). */
const RETRY_JUST_ENDED_MS = 250;
const RECEIPT = new Uint8Array(0);

interface Endpoint extends EndpointInfo {
  def: CommandDef;
  /** The command's subject template, for matching. */
  subject: string;
}

export class CommandService {
  private readonly subs: Subscription[] = [];
  private readonly endpoints: Endpoint[];
  private readonly matcher: SubjectMatcher<Endpoint>;
  private readonly stopping = new AbortController();
  private readonly stall = new LoopStall();
  private readonly recent = new RecentCommands(RETRY_WINDOW_MS);
  /** Where the owners' receipts of forwarded commands arrive (an empty reply, sent before anything else). */
  private readonly receipts: Replies;

  constructor(
    private readonly nc: NatsConnection,
    private readonly handlers: CommandHandlers,
    private readonly store: SandboxStore,
    private readonly options: CommandServiceOptions,
    private readonly log: Logger,
  ) {
    this.endpoints = commandTable.map((def) => {
      const scoped = routeOf(def) === 'host';
      return {
        def,
        subject: def.subject,
        name: endpointName(def),
        // What a client subscribes to reach it: this host's own subject, or the public filter.
        listenSubject: scoped ? commandSubject(def.subject, { host: options.host }) : commandFilter(def.subject),
        queueGroup: scoped ? undefined : QUEUE_GROUP,
        metadata: { request: def.request, reply: def.reply, changes_state: String(def.changesState) },
        numRequests: 0,
        numErrors: 0,
        lastError: '',
        processingTimeNs: 0,
      };
    });
    this.matcher = new SubjectMatcher(this.endpoints);
    this.receipts = Replies.for(nc);
  }

  start(): void {
    const serve = (err: Error | null, msg: Msg) => {
      if (err) {
        this.log.error({ err }, 'subscription error');
        return;
      }
      void this.serve(msg);
    };
    this.subs.push(this.nc.subscribe(subjects.publicCommands(), { queue: QUEUE_GROUP, callback: serve }));
    this.subs.push(this.nc.subscribe(subjects.hostCommands(this.options.host), { callback: serve }));
    this.stall.start();
  }

  /** One ADR-32 endpoint per command. */
  stats(): EndpointInfo[] {
    return this.endpoints.map(({ def: _def, subject: _subject, ...info }) => info);
  }

  /** Stops taking commands and aborts those in flight. */
  async stop(): Promise<void> {
    await Promise.all(this.subs.map((s) => s.drain().catch(() => {})));
    this.subs.length = 0;
    this.stall.stop();
    this.stopping.abort(unavailable(`host ${this.options.host} is stopping`));
  }

  private async serve(msg: Msg): Promise<void> {
    const started = process.hrtime.bigint();
    const stalledMs = this.stall.stalledMs();
    let endpoint: Endpoint | undefined;
    const { subject, forwarded } = commandTail(msg.subject);
    // The receipt, first: the forwarder stops waiting for this host.
    if (forwarded && msg.reply) this.reply(msg.reply, RECEIPT);
    // Only hosts may publish forwarded commands, so the header is a host's word.
    const replyTo = (forwarded ? msg.headers?.get(FORWARDED_REPLY_HEADER) : msg.reply) || undefined;
    let outcome: string | undefined = ErrorCode.InvalidArgument;
    let retryKey: string | undefined;
    try {
      if (msg.data.length > MAX_PAYLOAD_BYTES) {
        throw invalidArgument(`payload of ${msg.data.length} bytes exceeds the limit of ${MAX_PAYLOAD_BYTES} bytes`);
      }
      const match = this.matcher.match(subject);
      if (!match) throw invalidArgument(`unknown command subject: ${msg.subject}`);
      endpoint = match.entry;
      endpoint.numRequests++;
      const { def } = endpoint;
      const route = routeOf(def);
      if (route === 'host' && match.params.host !== this.options.host) throw invalidArgument(`command for host ${match.params.host} reached host ${this.options.host}`);
      if (route !== 'host' && stalledMs > STALE_AFTER_MS) {
        throw unavailable(`host ${this.options.host} stood still for ${Math.round(stalledMs)} ms (stopped or overloaded): ${def.name} is not carried out this late, as its client may have had its answer elsewhere; try again`);
      }
      if (def.changesState) {
        const down = this.options.busDown?.();
        if (down) throw unavailable(`${def.name} needs NATS: ${down}; try again when it is back`);
      }
      if (route === 'sandbox' && !forwarded && !this.options.owns(match.params.sid!)) {
        // Its owner serves (and counts) it; for a lost owner the answer comes from here.
        outcome = undefined;
        const answer = await this.forward(match.params.sid!, subject, msg, def);
        if (answer && replyTo) {
          this.reply(replyTo, encode({ ok: true, ...answer }));
          outcome = 'OK';
        }
        return;
      }
      if (route === 'sandbox' && def.changesState) {
        const key = RecentCommands.key(subject, msg.data);
        const firstSentAgo = Number(msg.headers?.get(RETRY_HEADER) || NaN);
        if (firstSentAgo >= 0 && this.recent.has(key, firstSentAgo, RETRY_SLACK_MS, RETRY_JUST_ENDED_MS)) {
          // The first try runs here or just ran: it answers the client.
          outcome = undefined;
          return;
        }
        this.recent.begin((retryKey = key));
      }
      const request = decode<CommandRequest<CommandName>>(def.request, msg.data);
      const timeoutMs = (request as { timeoutMs?: number }).timeoutMs;
      const call: CommandCall<CommandName> = {
        name: def.name,
        params: match.params as CommandParams<CommandName>,
        request,
        deadline: Date.now() + (timeoutMs || this.options.defaultDeadlineMs),
        signal: this.stopping.signal,
      };
      const handler = this.handlers[def.name] as (call: CommandCall<CommandName>) => Promise<object>;
      const body = encode({ ok: true, ...(await handler(call)) });
      if (replyTo) this.reply(replyTo, body);
      outcome = 'OK';
    } catch (err) {
      const e = toVcError(busUnavailable(err));
      outcome = e.code;
      if (endpoint) {
        endpoint.numErrors++;
        endpoint.lastError = `${e.code}: ${e.message}`;
      }
      if (e.code === ErrorCode.Internal) this.log.error({ err, subject: msg.subject }, 'command failed');
      if (replyTo) this.reply(replyTo, encode({ ok: false, error: e.toInfo() }), errorHeaders(e));
    } finally {
      if (retryKey) this.recent.end(retryKey);
      const elapsed = Number(process.hrtime.bigint() - started);
      if (endpoint) endpoint.processingTimeNs += elapsed;
      if (outcome) this.options.observe?.(endpoint?.def.name ?? 'unknown', outcome, elapsed / 1e9);
    }
  }

  /** Answers a client; a connection that closed meanwhile (the host stopping) drops the answer, as it would any. */
  private reply(replyTo: string, data: Uint8Array, h?: ReturnType<typeof headers>): void {
    try {
      this.nc.publish(replyTo, data, h ? { headers: h } : undefined);
    } catch (err) {
      this.log.debug({ err, replyTo }, 'reply not sent: the connection is closed');
    }
  }

  /**
   * Sends a command on to the host that owns the sandbox. When that host is lost (or
   * silent), answers at once instead: `status` from the record (state lost), anything
   * else Unavailable naming the host; the reply body is returned then.
   */
  private async forward(sandboxId: string, subject: string, msg: Msg, def: CommandDef): Promise<object | undefined> {
    const record = await this.store.get(sandboxId);
    if (!record) throw notFound(`sandbox ${sandboxId} does not exist`);
    if (record.host === this.options.host) {
      throw unavailable(`sandbox ${sandboxId} belongs to host ${this.options.host} but is not loaded on it`);
    }
    const lost = this.options.lost?.(record.host);
    if (lost && def.name === 'SandboxStatus') return { sandbox: lostStatus(record.status, lost) };
    const why = this.options.unreachable?.(record.host);
    if (why) throw unavailable(`sandbox ${sandboxId} cannot be reached: ${why}${lost ? '; `sandbox forget` drops its record' : ''}`);
    const h = headers();
    for (const [key, values] of msg.headers ?? []) for (const v of values) h.append(key, v);
    if (msg.reply) h.set(FORWARDED_REPLY_HEADER, msg.reply);
    try {
      await this.receipts.request(subjects.hostForward(record.host, subject), msg.data, FORWARD_RECEIPT_MS, h);
    } catch (err) {
      const seen = this.options.lastBeat?.(record.host);
      const silent = seen ? `; its last heartbeat was seen at ${seen}` : '';
      if (err instanceof NoRespondersError) {
        throw unavailable(`sandbox ${sandboxId} cannot be reached: host ${record.host} is not connected to NATS (dead or cut off)${silent}`);
      }
      if (err instanceof TimeoutError) {
        throw unavailable(`sandbox ${sandboxId} cannot be reached: host ${record.host} did not take the command within ${FORWARD_RECEIPT_MS} ms (stopped, hung or cut off)${silent}`);
      }
      throw err;
    }
    return undefined;
  }
}

/** The ADR-32 error headers of a failed reply. */
function errorHeaders(e: VcError) {
  const h = headers();
  h.set('Nats-Service-Error', e.message.slice(0, 1024).replace(/[\r\n]+/g, ' '));
  h.set('Nats-Service-Error-Code', String(SERVICE_ERROR_NUMBER[e.code]));
  return h;
}

/** A failed reply: the envelope with the error, and the ADR-32 error headers. */
export function respondError(msg: Msg, e: VcError): void {
  if (msg.reply) msg.respond(encode({ ok: false, error: e.toInfo() }), { headers: errorHeaders(e) });
}
