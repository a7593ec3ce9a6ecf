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
import { headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { decode, encode, MAX_PAYLOAD_BYTES } from './codec.js';
import { commandTable, endpointName, routeOf, type CommandDef, type CommandName, type CommandParams, type CommandRequest, type ReplyBody } from './commands.js';
import { ErrorCode, invalidArgument, notFound, toVcError, unavailable, type VcError } from './errors.js';
import type { SandboxStore } from './store.js';
import { commandFilter, commandSubject, commandTail, QUEUE_GROUP, subjects, SubjectMatcher } from './subjects.js';
import type { EndpointInfo } from './service-discovery.js';
import { lostStatus, type LostHost } from './liveness.js';
import { busUnavailable } from './health.js';

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
  PermissionDenied: 403,
};

/** Header of a forwarded command: where the owner host sends the reply. */
export const FORWARDED_REPLY_HEADER = 'Vc-Reply-To';

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
  }

  /** One ADR-32 endpoint per command. */
  stats(): EndpointInfo[] {
    return this.endpoints.map(({ def: _def, subject: _subject, ...info }) => info);
  }

  /** Stops taking commands and aborts those in flight. */
  async stop(): Promise<void> {
    await Promise.all(this.subs.map((s) => s.drain().catch(() => {})));
    this.subs.length = 0;
    this.stopping.abort(unavailable(`host ${this.options.host} is stopping`));
  }

  private async serve(msg: Msg): Promise<void> {
    const started = process.hrtime.bigint();
    let endpoint: Endpoint | undefined;
    const { subject, forwarded } = commandTail(msg.subject);
    // Only hosts may publish forwarded commands, so the header is a host's word.
    const replyTo = (forwarded ? msg.headers?.get(FORWARDED_REPLY_HEADER) : msg.reply) || undefined;
    let outcome: string | undefined = ErrorCode.InvalidArgument;
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
      if (def.changesState) {
        const down = this.options.busDown?.();
        if (down) throw unavailable(`${def.name} needs NATS: ${down}; try again when it is back`);
      }
      if (route === 'sandbox' && !forwarded && !this.options.owns(match.params.sid!)) {
        // Its owner serves (and counts) it; for a lost owner the answer comes from here.
        outcome = undefined;
        const answer = await this.forward(match.params.sid!, msg, def);
        if (answer && replyTo) {
          this.reply(replyTo, encode({ ok: true, ...answer }));
          outcome = 'OK';
        }
        return;
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
  private async forward(sandboxId: string, msg: Msg, def: CommandDef): Promise<object | undefined> {
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
    this.nc.publish(subjects.hostForward(record.host, msg.subject), msg.data, { headers: h });
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
