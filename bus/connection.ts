// Connecting to NATS: where the server and the credentials are (one discovery for the
// CLI, the host, the tests and the benchmarks), the connect options, how a refusal by
// the server's permissions reads, and setting up what the runtime stores there (the
// events stream and the KV buckets, idempotent: every host runs it at start).
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { connect, credsAuthenticator, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { CLIENT_JS_API, kvStream, streams, subjects } from './subjects.js';
import { authFiles } from './auth-files.js';
import { credsIdentity, roleAccount, type CredsIdentity } from './credentials.js';
import { permissionDenied, type VcError } from './errors.js';
import { commandOf } from './roles.js';

export const DEFAULT_SERVER = 'nats://127.0.0.1:4222';

/** The runtime's state directory (`VC_STATE_DIR`, default `.state`). */
export const stateDir = (env: NodeJS.ProcessEnv = process.env) => resolve(env.VC_STATE_DIR || '.state');

/** What `npm start` leaves in the state directory for clients on the same machine. */
export const stateFiles = (dir: string) => ({
  /** The private server's URL. */
  url: join(dir, 'nats.url'),
  /** The private server's pid: a restarted `npm start` finds the server it left. */
  pid: join(dir, 'nats.pid'),
  /** Credentials of the private server (see auth-files.ts). */
  auth: join(dir, 'auth'),
});

export interface BusTarget {
  servers: string[];
  /** A `.creds` file; none connects anonymously (which a server with auth refuses). */
  creds?: string;
}

/**
 * Finds the server and the credentials: the flag, else the environment (`NATS_URL`,
 * `NATS_CREDS`), else what `npm start` wrote to the state directory, else the default
 * URL and no credentials.
 */
export function discoverBus(flags: { server?: string; creds?: string } = {}, env: NodeJS.ProcessEnv = process.env): BusTarget {
  const files = stateFiles(stateDir(env));
  let server = flags.server || env.NATS_URL;
  if (!server) {
    try {
      server = readFileSync(files.url, 'utf8').trim();
    } catch {
      server = DEFAULT_SERVER;
    }
  }
  const local = authFiles(files.auth).creds('operator');
  const creds = flags.creds || env.NATS_CREDS || (existsSync(local) ? local : undefined);
  return { servers: server.split(',').filter(Boolean), ...(creds ? { creds } : {}) };
}

export interface ConnectOptions {
  servers: string | string[];
  /** A `.creds` file; none connects anonymously (which a server with auth refuses). */
  creds?: string;
  name?: string;
  /** Keep retrying while the server restarts (a host); a CLI gives up early. */
  persistent?: boolean;
}

function readCreds(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read credentials ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Connections whose JetStream calls go through the clients' account imports. */
const clientConnections = new WeakSet<NatsConnection>();

/**
 * Options for jetstream()/jetstreamManager() on a bus connection: a client (operator
 * or viewer) reaches the hosts' streams under its account's import prefix; a host, or
 * anyone on a server without authentication, under $JS.API.
 */
export function jetStreamOptions(nc: NatsConnection): { apiPrefix?: string; checkAPI: false } {
  return clientConnections.has(nc) ? { apiPrefix: CLIENT_JS_API, checkAPI: false } : { checkAPI: false };
}

export async function connectBus(opts: ConnectOptions): Promise<NatsConnection> {
  const creds = opts.creds ? readCreds(opts.creds) : undefined;
  const nc = await connect({
    servers: opts.servers,
    name: opts.name ?? 'virtactors',
    ...(creds ? { authenticator: credsAuthenticator(creds) } : {}),
    maxReconnectAttempts: opts.persistent ? -1 : 10,
    reconnectTimeWait: 250,
    waitOnFirstConnect: !!opts.persistent,
    // Async traces build an Error (with a stack) per request; at thousands of requests
    // per second that is most of the client's CPU.
    noAsyncTraces: true,
  });
  const role = creds && credsIdentity(new TextDecoder().decode(creds)).role;
  if (role && roleAccount(role) === 'clients') clientConnections.add(nc);
  return nc;
}

/** Who a credentials file speaks for (its name and role), when it names one. */
export function identityOf(creds: string | undefined): CredsIdentity | undefined {
  if (!creds) return undefined;
  try {
    return credsIdentity(readFileSync(creds, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * A refusal by the server's permissions as a PermissionDenied error that says what
 * was refused to whom; undefined for any other error. nats.js reports a refused
 * publish of a request as a RequestError whose cause is a PermissionViolationError.
 */
export function permissionError(err: unknown, who: CredsIdentity | undefined): VcError | undefined {
  let e: unknown = err;
  while (e instanceof Error && !(e instanceof PermissionViolationError)) e = e.cause;
  if (!(e instanceof PermissionViolationError)) return undefined;
  const role = who?.role ? `role ${who.role}` : `user ${who?.name ?? '(anonymous)'}`;
  const command = e.operation === 'publish' ? commandOf(e.subject) : undefined;
  const what = command ? `${command.name}${command.target ? ` ${command.target}` : ''} (${e.operation} ${e.subject})` : `${e.operation} ${e.subject}`;
  return permissionDenied(`permission denied: ${role} may not ${what}`);
}

export interface StreamSettings {
  /**
   * Replicas of the stream and buckets. Default: 1 on a single server, min(3, cluster
   * size) in a cluster (tried from 3 down until the cluster has the peers).
   */
  replicas?: number;
  /** How long events are kept, in seconds. Default 7 days. */
  eventMaxAgeSec?: number;
  /** How many bytes of events are kept, oldest dropped first (VC_EVENTS_MAX_BYTES). Default 1 GiB. */
  eventMaxBytes?: number;
  /** Told when existing ones are raised to more replicas, or cannot be. */
  log?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/**
 * How long the stream remembers a Nats-Msg-Id. An outbox retry later than half of it
 * asks the stream whether the event is there instead (bus/outbox.ts), so this bounds
 * memory, not correctness.
 */
export const DUPLICATE_WINDOW_NS = 2 * 60 * 1e9;

/**
 * The events stream's bound in bytes unless told otherwise. Age alone bounds nothing: a
 * busy host writes a few MB a second of events, which a week of would fill the server's
 * disk, and a JetStream out of disk refuses every record write as well.
 */
export const DEFAULT_EVENT_MAX_BYTES = 1024 ** 3;

/** `VC_REPLICAS`: replicas of the stream and buckets, overriding the cluster's size. */
export function replicasFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.VC_REPLICAS;
  if (v === undefined || v === '') return undefined;
  if (!/^[1-5]$/.test(v)) throw new Error('VC_REPLICAS must be a number from 1 to 5');
  return Number(v);
}

/**
 * Creates the events stream and the KV buckets when they do not exist yet, and raises
 * existing ones to the replicas wanted. A cluster that has just started needs a few
 * seconds to elect its JetStream leader: retry until `waitMs` has passed.
 */
export async function ensureBusState(nc: NatsConnection, settings: StreamSettings = {}, waitMs = 30_000): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await ensureOnce(nc, settings);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** A refusal that means "not that many peers": try fewer replicas. */
const tooFewPeers = (err: unknown) => err instanceof Error && /insufficient resources|no suitable peers|non-clustered mode|replicas/i.test(err.message);

async function ensureOnce(nc: NatsConnection, settings: StreamSettings): Promise<void> {
  const jsm = await jetstreamManager(nc);
  // In a cluster, 3 replicas where it has 3 servers, else as many as it has.
  const tries = settings.replicas ? [settings.replicas] : nc.info?.cluster ? [3, 2, 1] : [1];
  const { Kvm } = await import('@nats-io/kv');
  const kvm = new Kvm(nc);
  const wanted: Array<{ stream: string; create(replicas: number): Promise<unknown> }> = [
    {
      stream: streams.events,
      create: async (replicas) => {
        const config = {
          name: streams.events,
          subjects: [subjects.eventsAll()],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          discard: DiscardPolicy.Old,
          max_age: (settings.eventMaxAgeSec ?? 7 * 24 * 3600) * 1e9,
          duplicate_window: DUPLICATE_WINDOW_NS,
          num_replicas: replicas,
        };
        if (settings.eventMaxBytes !== undefined) return jsm.streams.add({ ...config, max_bytes: settings.eventMaxBytes });
        const fitted = await largestAccepted((max_bytes) => jsm.streams.add({ ...config, max_bytes }), DEFAULT_EVENT_MAX_BYTES);
        if (fitted < DEFAULT_EVENT_MAX_BYTES) await halveForTheRest(jsm, fitted, settings);
      },
    },
    { stream: kvStream(streams.sandboxBucket), create: (replicas) => kvm.create(streams.sandboxBucket, { history: 1, replicas }) },
    { stream: kvStream(streams.hostBucket), create: (replicas) => kvm.create(streams.hostBucket, { history: 1, replicas, ttl: 0 }) },
  ];
  for (const w of wanted) {
    const info = await jsm.streams.info(w.stream).catch(() => undefined);
    if (info) {
      await raiseReplicas(jsm, info.config, tries, settings.log);
      if (w.stream === streams.events) await boundEvents(jsm, info.config, settings);
      continue;
    }
    for (let i = 0; ; i++) {
      try {
        await w.create(tries[i]!);
        break;
      } catch (err) {
        // Another host created it in between.
        if (await jsm.streams.info(w.stream).then(() => true, () => false)) break;
        if (i + 1 < tries.length && tooFewPeers(err)) continue;
        throw err;
      }
    }
  }
}

/**
 * The events stream an earlier version made without a byte bound gets the default one,
 * and any gets the bound the host was told (VC_EVENTS_MAX_BYTES); a bound an operator set
 * on the stream stays otherwise.
 */
async function boundEvents(jsm: JetStreamManager, config: StreamConfig, settings: StreamSettings): Promise<void> {
  const wanted = settings.eventMaxBytes ?? (config.max_bytes > 0 ? config.max_bytes : DEFAULT_EVENT_MAX_BYTES);
  if (config.max_bytes === wanted) return;
  // The latest config, not the one read before the replicas were raised.
  const update = async (max_bytes: number) => jsm.streams.update(config.name, { ...(await jsm.streams.info(config.name)).config, max_bytes });
  try {
    if (settings.eventMaxBytes !== undefined) await update(wanted);
    else {
      const fitted = await largestAccepted(update, wanted);
      if (fitted < wanted) await halveForTheRest(jsm, fitted, settings);
    }
    settings.log?.info({ stream: config.name, from: config.max_bytes, to: (await jsm.streams.info(config.name)).config.max_bytes }, 'events stream bounded in bytes');
  } catch (err) {
    settings.log?.warn({ err, stream: config.name, maxBytes: wanted }, 'events stream keeps its byte bound: the server refused another');
  }
}

/** JetStream could not reserve a stream's max_bytes (its store, or the account's, is smaller). */
const insufficientStorage = (err: unknown) => err instanceof Error && /insufficient storage/i.test(err.message);

/** The smallest bound tried on a server with a small store. */
const MIN_EVENT_MAX_BYTES = 1024 * 1024;

/** Applies `start`, or the largest of its halves the server accepts. */
async function largestAccepted(apply: (maxBytes: number) => Promise<unknown>, start: number): Promise<number> {
  for (let bytes = start; ; bytes = Math.floor(bytes / 2)) {
    try {
      await apply(bytes);
      return bytes;
    } catch (err) {
      if (!insufficientStorage(err) || bytes / 2 < MIN_EVENT_MAX_BYTES) throw err;
    }
  }
}

/**
 * The default did not fit the server's store: the events take half of what did, so that
 * the records (which reserve nothing) still find room when the events are at their bound.
 */
async function halveForTheRest(jsm: JetStreamManager, fitted: number, settings: StreamSettings): Promise<void> {
  const bound = Math.floor(fitted / 2);
  await jsm.streams.update(streams.events, { ...(await jsm.streams.info(streams.events)).config, max_bytes: bound });
  settings.log?.warn({ stream: streams.events, maxBytes: bound }, `the server cannot reserve ${DEFAULT_EVENT_MAX_BYTES} bytes of events: kept to ${bound} (VC_EVENTS_MAX_BYTES sets it)`);
}

/** An existing stream with fewer replicas than wanted is raised, where the server allows. */
async function raiseReplicas(jsm: JetStreamManager, config: StreamConfig, tries: number[], log: StreamSettings['log']): Promise<void> {
  for (const replicas of tries) {
    if (replicas <= config.num_replicas) return;
    try {
      await jsm.streams.update(config.name, { ...config, num_replicas: replicas });
      log?.info({ stream: config.name, from: config.num_replicas, to: replicas }, 'stream raised to more replicas');
      return;
    } catch (err) {
      if (!tooFewPeers(err)) {
        log?.warn({ err, stream: config.name, replicas }, 'stream keeps its replicas: the server refused more');
        return;
      }
    }
  }
}
