// The composition root: one runtime host = a bus connection + the sandbox registry +
// the command service + the event publisher + service discovery.
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { nuid, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import type { Logger } from 'pino';
import type { InspectionEvent } from 'xstate';
import { connectBus, ensureBusState } from '../bus/connection.js';
import { CommandService } from '../bus/command-service.js';
import { EventPublisher } from '../bus/events.js';
import { BusHealth } from '../bus/health.js';
import { DEFAULT_HOST_LOST_AFTER_MS, HostLiveness } from '../bus/liveness.js';
import { KvSandboxStore } from '../bus/store.js';
import { startServiceDiscovery } from '../bus/service-discovery.js';
import { startCredsService } from '../bus/creds-service.js';
import type { Authority } from '../bus/credentials.js';
import { encode } from '../bus/codec.js';
import { HOST_PATTERN, streams, subjects } from '../bus/subjects.js';
import { SandboxRegistry } from '../actors/registry.js';
import { createAgent } from '../actors/agents/index.js';
import { createBackend, defaultGuestBackend } from '../actors/backends/index.js';
import { VmBackend } from '../actors/backends/vm/backend.js';
import { VmHost } from '../actors/backends/vm/host.js';
import type { PoolTargets } from '../actors/backends/vm/pool.js';
import { DEFAULT_MONITOR, type SpecDefaults } from '../actors/sandbox-spec.js';
import type { MonitorSettings } from '../machines/specs.js';
import { createLogger } from './log.js';
import { createCommandHandlers } from './commands.js';
import { VERSION } from './version.js';
import { HostMetrics, serveMetrics } from './metrics.js';

export interface HostOptions {
  servers: string | string[];
  /** The host's `.creds` file (role host); none for a server without authentication. */
  creds?: string;
  /** The signing keys: with them this host also serves `creds create`. */
  authority?: Authority;
  /** Host name on the bus; default: the machine's hostname, made subject-safe. */
  host?: string;
  /** Root of per-sandbox run directories (sockets, guest state). */
  runRoot?: string;
  log?: Logger;
  monitor?: Partial<MonitorSettings>;
  /** Replicas for the stream and buckets when this host creates them. */
  replicas?: number;
  /** Publish every actor snapshot on vc.v1.inspect.sandbox.<sid> for live tooling. */
  inspect?: boolean;
  /** Receives every XState inspection event of every sandbox (the Stately inspector hook). */
  observe?: (event: InspectionEvent) => void;
  /** Deadline of a command whose request names none, in ms (default 60 s). */
  commandDeadlineMs?: number;
  /** The vm backend: its cache (kernel, image), warm pool and VM size. */
  vm?: { cacheDir?: string; pool?: PoolTargets; memoryMiB?: number; cpus?: number };
  /** Directories where the external backend may attach to agent endpoints; none turns it off. */
  attachDirs?: readonly string[];
  /** Allow privileged containers for every caller (VC_ALLOW_PRIVILEGED=1); off by default. */
  allowPrivileged?: boolean;
  /** Directories of the runtime (state, data) that no container rootfs may expose; the run root is always one. */
  protectedDirs?: string[];
  /** Where events wait while NATS cannot take them (default `<run root>/.outbox`; `npm start`: `$VC_STATE_DIR/outbox`). */
  outboxDir?: string;
  /** After how long without a heartbeat another host counts as lost (VC_HOST_LOST_AFTER_MS, default 15 s). */
  hostLostAfterMs?: number;
  /** Where to serve Prometheus metrics (VC_METRICS_ADDR); none: counted, not served. */
  metricsAddr?: { host: string; port: number };
  /** Memory the host keeps for itself: no guest or VM starts that would leave less (VC_MEMORY_RESERVE_MIB, default 256). */
  memoryReserveMiB?: number;
  /** How many sandboxes this host holds at most (VC_MAX_SANDBOXES, default 16384). */
  maxSandboxes?: number;
  /** Processes a namespace sandbox may have unless it asks otherwise (VC_SANDBOX_PIDS_MAX, default 4096; 0: none). */
  sandboxPidsMax?: number;
  /** Bytes of events the stream keeps, oldest dropped first (VC_EVENTS_MAX_BYTES, default 1 GiB). */
  eventMaxBytes?: number;
}

/** Where the vm backend caches its kernel and image: the state directory. */
export const vmCacheDir = () => process.env.VC_VM_CACHE ?? join(process.env.VC_STATE_DIR ?? '.state', 'vm');

/** The warm pool and VM size in $SRV metadata (ADR-32 metadata is strings only). */
function vmMetadata(vm: VmHost): Record<string, string> {
  const pool = vm.poolStatus();
  if (!pool) return {};
  return {
    'vm.pool.size': String(pool.size),
    'vm.pool.ready': String(pool.ready),
    'vm.pool.booting': String(pool.booting),
    'vm.pool.taken': String(pool.taken),
    'vm.pool': JSON.stringify(pool),
  };
}

export const DEFAULT_COMMAND_DEADLINE_MS = 60_000;

/** Room left in a KV message for its headers (the expected revision, the message id). */
const RECORD_HEADER_ROOM = 1024;
/** Room left in a list reply for its headers and the reply's own fields. */
const LIST_REPLY_ROOM = 8192;

export function defaultHostName(): string {
  const name = osHostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 63);
  return HOST_PATTERN.test(name) ? name : 'host';
}

export class RuntimeHost {
  private constructor(
    readonly host: string,
    readonly nc: NatsConnection,
    readonly registry: SandboxRegistry,
    private readonly commands: CommandService,
    private readonly closers: Array<() => Promise<void> | void>,
    readonly log: Logger,
    readonly vm: VmHost,
    readonly publisher: EventPublisher,
    readonly health: BusHealth,
  ) {}

  static async start(opts: HostOptions): Promise<RuntimeHost> {
    const host = opts.host ?? defaultHostName();
    if (!HOST_PATTERN.test(host)) throw new Error(`host name ${JSON.stringify(host)} is not a valid subject token`);
    const log = (opts.log ?? createLogger('virtactors')).child({ host });
    const nc = await connectBus({ servers: opts.servers, creds: opts.creds, name: `virtactors-host-${host}`, persistent: true });
    await ensureBusState(nc, { replicas: opts.replicas, eventMaxBytes: opts.eventMaxBytes, log });
    const store = await KvSandboxStore.open(nc);
    const health = new BusHealth(nc);
    const runRoot = opts.runRoot ?? join(process.env.VC_STATE_DIR ?? '/run/virtactors', 'sandboxes');
    // The registry answers whether an outbox lane's sandbox is still this host's.
    let registryRef: SandboxRegistry | undefined;
    const publisher = new EventPublisher(nc, {
      outboxDir: opts.outboxDir ?? join(runRoot, '.outbox'),
      health,
      log,
      stillOwned: async (lane) => lane.startsWith('host.') || !registryRef || registryRef.laneOwned(lane),
    });
    const outbox = publisher.outbox!;
    // VMs live beside the sandboxes' run directories (no sandbox id starts with a dot).
    const vm = new VmHost({ root: join(runRoot, '.vm'), cacheDir: opts.vm?.cacheDir ?? vmCacheDir(), log, pool: opts.vm?.pool, memoryMiB: opts.vm?.memoryMiB, cpus: opts.vm?.cpus, memoryReserveMiB: opts.memoryReserveMiB });
    vm.start();

    const metrics = new HostMetrics(host, { values: () => registry.values() });
    const publish = metrics.publishing((event, dedupId) => publisher.publish(event, dedupId));
    const registry: SandboxRegistry = new SandboxRegistry(
      {
        host,
        log,
        runDir: (sid) => join(runRoot, sid),
        createAgent,
        createBackend: (type) => (type === 'vm' ? new VmBackend(vm) : createBackend(type, log, { attachDirs: opts.attachDirs ?? [], memoryReserveMiB: opts.memoryReserveMiB, sandboxPidsMax: opts.sandboxPidsMax })),
        publish,
        pending: (lane) => outbox.pending(lane),
        blocked: (lane) => {
          const waiting = outbox.pending(lane);
          return health.reason() ?? (waiting ? `${waiting} earlier event${waiting > 1 ? 's' : ''} of it wait in the outbox` : undefined);
        },
        inspect: opts.inspect ? (sandbox, inspection) => nc.publish(subjects.inspectSandbox(sandbox.id), encode(inspection)) : undefined,
        observe: opts.observe,
      },
      store,
      {
        maxSandboxes: opts.maxSandboxes,
        // The record is one KV message: its headers take a little of the server's max_payload.
        maxRecordBytes: nc.info?.max_payload ? nc.info.max_payload - RECORD_HEADER_ROOM : undefined,
        busDown: () => (health.isConnected ? undefined : 'the runtime is not connected to NATS'),
        reaped: (sandbox, ownership, error) => {
          const message = `stopped the guest of sandbox ${sandbox.id} (incarnation ${sandbox.uid}): its record was ${ownership} while this host was lost` + (error ? ` (not cleanly: ${error instanceof Error ? error.message : String(error)})` : '');
          void publisher.publishHostEvent(host, host, 'reap', { sandboxId: sandbox.id, message }, `reap.${sandbox.id}.${sandbox.uid}`);
        },
      },
    );
    registryRef = registry;
    health.onReconnect(() => registry.retryRecords());
    // Events an earlier runtime could not store are stored first, in order.
    outbox.open();
    const started = new Date().toISOString();
    const liveness = new HostLiveness(await new Kvm(nc).open(streams.hostBucket), {
      host,
      version: VERSION,
      started,
      lostAfterMs: opts.hostLostAfterMs ?? DEFAULT_HOST_LOST_AFTER_MS,
      health,
      log,
      declared: (entry) => {
        void publisher.publishHostEvent(host, entry.host, 'lost', { message: `host ${entry.host} counted lost by ${host}: ${entry.lost?.reason}` }, `lost.${entry.host}.${entry.lost?.since}`);
      },
      wasLost: () => {
        void registry.reconcile().catch((err: unknown) => log.error({ err }, 'sandboxes not checked against their records'));
      },
    });
    const defaults: SpecDefaults = {
      monitor: { ...DEFAULT_MONITOR, ...opts.monitor },
      guestBackend: defaultGuestBackend(),
      containers: { allowPrivileged: opts.allowPrivileged ?? false, protectedDirs: [runRoot, ...(opts.protectedDirs ?? [])], rolesEnforced: opts.creds !== undefined },
    };
    // A restart on the same state: what this host owns comes back before it serves.
    const reattachStarted = performance.now();
    const records = await store.list();
    const listMs = Math.round(performance.now() - reattachStarted);
    const reattached = await registry.reattachAll(records);
    if (reattached.reattached + reattached.cleanedUp + reattached.failed > 0) {
      log.info({ ...reattached, listMs, ms: Math.round(performance.now() - reattachStarted) }, 'reattached the sandboxes of an earlier run');
    }
    const commands = new CommandService(
      nc,
      createCommandHandlers(registry, store, defaults, {
        lost: (h) => liveness.lost(h),
        forgotten: (record) => {
          const message = `record of sandbox ${record.id} dropped by an operator through host ${host}`;
          void publisher.publishHostEvent(host, record.host, 'forget', { sandboxId: record.id, message }, `forget.${record.id}.${record.incarnation ?? record.updatedAt}`);
        },
      }, nc.info?.max_payload ? nc.info.max_payload - LIST_REPLY_ROOM : undefined),
      store,
      {
        host,
        owns: (sid) => registry.has(sid),
        defaultDeadlineMs: opts.commandDeadlineMs ?? DEFAULT_COMMAND_DEADLINE_MS,
        unreachable: (h) => liveness.unreachable(h),
        lastBeat: (h) => liveness.lastBeat(h),
        lost: (h) => liveness.lost(h),
        busDown: () => health.reason(),
        observe: (name, code, s) => metrics.command(name, code, s),
      },
      log,
    );
    commands.start();

    const discovery = startServiceDiscovery(
      nc,
      {
        id: nuid.next(),
        version: VERSION,
        description: 'virtactors sandbox runtime host',
        // Tools ask here whether this host publishes actor snapshots (VC_INSPECT=1), and
        // how its pool of warm VMs stands.
        metadata: () => ({ host, inspect: opts.inspect ? 'true' : 'false', ...vmMetadata(vm) }),
        started,
      },
      () => commands.stats(),
    );
    const creds = opts.authority ? startCredsService(nc, opts.authority, log) : undefined;
    await liveness.start();
    const served = opts.metricsAddr ? await serveMetrics(metrics, opts.metricsAddr).catch((err: Error) => {
      log.warn({ err: err.message, addr: opts.metricsAddr }, 'cannot serve metrics (VC_METRICS_ADDR); counting them anyway');
      return undefined;
    }) : undefined;
    log.info({ servers: opts.servers, metrics: served?.url }, 'runtime host ready');

    const runtime = new RuntimeHost(host, nc, registry, commands, [
      () => liveness.stop(),
      () => served?.close(),
      () => Promise.all([...discovery, ...(creds ? [creds] : [])].map((s) => s.drain().catch(() => {}))).then(() => {}),
      // Pool VMs belong to no sandbox: they go with the host.
      () => vm.close(),
    ], log, vm, publisher, health);
    runtime.metrics = metrics;
    runtime.metricsUrl = served?.url;
    return runtime;
  }

  /** This host's metrics, and where they are served (when they are). */
  metrics!: HostMetrics;
  metricsUrl: string | undefined;

  /** Stops serving and detaches from every sandbox; guests keep running. */
  async stop(): Promise<void> {
    await this.commands.stop();
    for (const close of this.closers) await close();
    await this.registry.detachAll();
    // What could not be stored stays on disk for the next start.
    this.publisher.outbox?.close();
    await this.nc.drain().catch(() => {});
  }
}
