// The command service: request/reply endpoints for every command, the envelope
// ({ok: true, ...} or {ok: false, error}), and routing to the host that owns a sandbox.
//
// Routing uses one wildcard subscription per host (queue group) plus the sandbox
// directory in KV, instead of one subscription per sandbox: each subscription costs
// memory on every server of a cluster. A host that receives a command for a sandbox it
// does not hold forwards it, reply subject untouched, to the owner's host subject.
import { headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { encode, MAX_PAYLOAD_BYTES } from './codec.js';
import { ErrorCode, invalidArgument, notFound, toVcError, unavailable, type VcError } from './errors.js';
import type { SandboxStore } from './store.js';
import { parseCommandSubject, QUEUE_GROUP, subjects, type ParsedCommand } from './subjects.js';
import type { EndpointStats } from './service-discovery.js';

export interface CommandHandler {
  /** Whether this host holds the sandbox's actor. */
  owns(sandboxId: string): boolean;
  /** Runs a command; resolves with the reply fields (ok is added here). */
  handle(command: ParsedCommand, data: Uint8Array): Promise<Record<string, unknown>>;
}

/** ADR-32 error codes (HTTP-like numbers) for the Nats-Service-Error-Code header. */
const SERVICE_ERROR_NUMBER: Record<ErrorCode, number> = {
  InvalidArgument: 400,
  NotFound: 404,
  AlreadyExists: 409,
  FailedPrecondition: 409,
  Internal: 500,
  Unimplemented: 501,
  Unavailable: 503,
  DeadlineExceeded: 504,
};

type Route = 'local' | 'directory';

interface Endpoint extends EndpointStats {
  route: Route;
}

export class CommandService {
  private readonly subs: Subscription[] = [];
  private readonly endpoints: Endpoint[];

  constructor(
    private readonly nc: NatsConnection,
    private readonly host: string,
    private readonly handler: CommandHandler,
    private readonly store: SandboxStore,
    private readonly log: Logger,
  ) {
    const ep = (name: string, subject: string, route: Route, queueGroup?: string): Endpoint => ({
      name, subject, route, queueGroup, numRequests: 0, numErrors: 0, lastError: '', processingTimeNs: 0,
    });
    this.endpoints = [
      ep('sandbox-create', subjects.sandboxCreate(), 'local', QUEUE_GROUP),
      ep('host-sandbox-create', subjects.hostSandboxCreate(host), 'local'),
      ep('sandbox-list', subjects.sandboxList(), 'local', QUEUE_GROUP),
      ep('sandbox-commands', subjects.allSandboxCommands(), 'directory', QUEUE_GROUP),
      ep('forwarded-commands', subjects.hostForwardAll(host), 'local'),
    ];
  }

  start(): void {
    for (const endpoint of this.endpoints) {
      this.subs.push(
        this.nc.subscribe(endpoint.subject, {
          queue: endpoint.queueGroup,
          callback: (err, msg) => {
            if (err) {
              this.log.error({ err, subject: endpoint.subject }, 'subscription error');
              return;
            }
            void this.serve(endpoint, msg);
          },
        }),
      );
    }
  }

  stats(): EndpointStats[] {
    return this.endpoints.map(({ route: _route, ...stats }) => stats);
  }

  async stop(): Promise<void> {
    await Promise.all(this.subs.map((s) => s.drain().catch(() => {})));
    this.subs.length = 0;
  }

  private async serve(endpoint: Endpoint, msg: Msg): Promise<void> {
    const started = process.hrtime.bigint();
    endpoint.numRequests++;
    try {
      if (msg.data.length > MAX_PAYLOAD_BYTES) {
        throw invalidArgument(`payload of ${msg.data.length} bytes exceeds the limit of ${MAX_PAYLOAD_BYTES} bytes`);
      }
      const command = parseCommandSubject(msg.subject);
      if (endpoint.route === 'directory' && 'sid' in command && !this.handler.owns(command.sid)) {
        if (await this.forward(command.sid, msg)) return;
      }
      const reply = await this.handler.handle(command, msg.data);
      this.respond(msg, { ok: true, ...reply });
    } catch (err) {
      const e = toVcError(err);
      endpoint.numErrors++;
      endpoint.lastError = `${e.code}: ${e.message}`;
      if (e.code === ErrorCode.Internal) this.log.error({ err, subject: msg.subject }, 'command failed');
      this.respondError(msg, e);
    } finally {
      endpoint.processingTimeNs += Number(process.hrtime.bigint() - started);
    }
  }

  /** Sends a command on to the owner of the sandbox; false when this host should answer. */
  private async forward(sandboxId: string, msg: Msg): Promise<boolean> {
    const record = await this.store.get(sandboxId);
    if (!record) throw notFound(`sandbox ${sandboxId} does not exist`);
    if (record.host === this.host) {
      throw unavailable(`sandbox ${sandboxId} belongs to host ${this.host} but is not loaded on it`);
    }
    this.nc.publish(subjects.hostForward(record.host, msg.subject), msg.data, {
      reply: msg.reply,
      headers: msg.headers,
    });
    return true;
  }

  private respond(msg: Msg, body: object): void {
    if (msg.reply) msg.respond(encode(body));
  }

  private respondError(msg: Msg, e: VcError): void {
    if (!msg.reply) return;
    const h = headers();
    h.set('Nats-Service-Error', e.message.slice(0, 1024).replace(/[\r\n]+/g, ' '));
    h.set('Nats-Service-Error-Code', String(SERVICE_ERROR_NUMBER[e.code]));
    msg.respond(encode({ ok: false, error: e.toInfo() }), { headers: h });
  }
}
