// grpc.AgentService and grpc.Health on top of the supervisor, with the semantics of the
// 2018 agent: one sandbox per agent, containers from the OCI spec in the request,
// blocking waits and reads, FailedPrecondition for calls before CreateSandbox.
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Metadata, status, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { detectCgroups, GuestError, mount9p, NINEP_OPTIONS, noteMounts, Reaper, Supervisor, toGuestError, unmount, type CgroupChoice, type GuestErrorCode, type GuestLog, type OciRuntime } from '../common/index.js';
import {
  agentService,
  API_VERSION,
  PID_TRAILER,
  primeCodecs,
  ServingStatus,
  type AgentMethod,
  type AgentServiceMethods,
  type HealthMethod,
  type HealthMethods,
} from '../../protos/kata/index.js';
import type { Storage } from '../../protos/kata/index.js';
import { confinementOf, processSpec, resourcesOf, statsMessage } from './convert.js';

export const AGENT_VERSION = 'virtactors-kata-agent 0.1.0';

const grpcCode: Record<GuestErrorCode, status> = {
  NotFound: status.NOT_FOUND,
  AlreadyExists: status.ALREADY_EXISTS,
  FailedPrecondition: status.FAILED_PRECONDITION,
  InvalidArgument: status.INVALID_ARGUMENT,
  DeadlineExceeded: status.DEADLINE_EXCEEDED,
  Unavailable: status.UNAVAILABLE,
  ResourceExhausted: status.RESOURCE_EXHAUSTED,
  Internal: status.INTERNAL,
};

/** An rpc handler: the request, a signal aborted when the caller gives up, trailers to add. */
interface CallContext {
  signal: AbortSignal;
  trailer: Metadata;
}

type Handlers<T extends { [M in keyof T]: { request: unknown; response: unknown } }> = {
  [M in keyof T]: (request: T[M]['request'], ctx: CallContext) => Promise<T[M]['response']> | T[M]['response'];
};

/** A reply with a gRPC status of its own (not one of the supervisor's codes). */
class RpcError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

const unimplemented = () => new RpcError(status.UNIMPLEMENTED, 'guest networking is set up by the sandbox backend, not by this agent');

export interface AgentOptions {
  log: GuestLog;
  cgroups: CgroupChoice;
  /** Run processes in a reaping pid namespace (needed when the agent is PID 1). */
  reaper: boolean;
  /** The agent is a whole VM's: CreateSandbox's hostname becomes the kernel's. */
  setHostname?: boolean;
  /**
   * Build CreateSandbox's message classes at start (a VM, likely waiting in a warm pool,
   * where they cost tens of ms under TCG); a guest started for its sandbox builds them at
   * the call, which costs it less than building them first.
   */
  primeCreate?: boolean;
  /** The OCI runtime containers run through (undefined: not contained, a guest that is not root). */
  oci?: OciRuntime;
  /** The guest's state directory (bundles, the default root filesystem). */
  stateDir: string;
  /**
   * Behave like the stock kata agent 1.x as observed (reference §10): no pid trailer,
   * streams that end with an `EOF` error, SIGTERM to an init without a handler sent as
   * SIGKILL, libcontainer's Unknown errors for pause/resume in the wrong state, an
   * existing rootfs required, a spec without Linux.Resources fatal, and execs refused in
   * a container whose mounts lack /sys/fs/cgroup.
   */
  stock?: boolean;
  /** How the agent dies (stock mode, on a spec it dereferences nil in); never returns. */
  die?(message: string): Promise<never>;
}

/** What stock mode remembers of a container. */
interface StockContainer {
  initId: string;
  initPid?: number;
  /** Its spec mounts /sys/fs/cgroup (libcontainer's init needs it at the first exec). */
  cgroupMount: boolean;
}

const SIGTERM = 15;
const SIGKILL = 9;

/** Whether a process catches a signal (its SigCgt mask in /proc). */
function catches(pid: number, signal: number): boolean {
  try {
    const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return mask !== undefined && ((BigInt(`0x${mask}`) >> BigInt(signal - 1)) & 1n) === 1n;
  } catch {
    return false;
  }
}

interface Sandbox {
  id: string;
  hostname: string;
  supervisor: Supervisor;
  /** Mount points of the sandbox's storages, unmounted when it is destroyed. */
  mounts: string[];
}

/** The 9p share of kata 1.x (driver "9p", source = the host's mount tag). */
const is9p = (s: Storage) => s.driver === '9p' || s.fstype === '9p';

/** Mounts the sandbox storages this agent knows (9p shares); others are refused. */
async function mountStorages(storages: Storage[], log: GuestLog): Promise<string[]> {
  const mounted: string[] = [];
  try {
    for (const s of storages) {
      if (!is9p(s)) throw new GuestError('InvalidArgument', `storage driver ${JSON.stringify(s.driver ?? '')} is not supported by this agent (9p only)`);
      const dir = s.mount_point ?? '';
      if (!dir.startsWith('/')) throw new GuestError('InvalidArgument', `storage mount point ${JSON.stringify(dir)} is not an absolute path`);
      // A VM's share is mounted at boot: a line on its serial console costs ms under TCG.
      if (await mount9p(s.source ?? '', dir, s.options?.length ? s.options : NINEP_OPTIONS)) log.info('storage mounted', { source: s.source, mountPoint: dir });
      mounted.push(dir);
    }
  } catch (err) {
    for (const dir of mounted.reverse()) await unmount(dir);
    throw err;
  }
  return mounted;
}

const groupName = (sandboxId: string) => `kata-${sandboxId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64)}-${process.pid}`;

export class KataAgent {
  private sandbox: Sandbox | undefined;
  private creating = false;
  private readonly stockContainers = new Map<string, StockContainer>();
  private readonly reaper: Reaper | undefined;
  private cgroupDriver: ReturnType<typeof detectCgroups> | null = null;

  constructor(private readonly options: AgentOptions) {
    this.reaper = options.reaper ? new Reaper(options.log) : undefined;
  }

  /**
   * Does, before any request, what CreateSandbox needs and no request decides (the cgroup
   * driver, the 9p mounts already there; in a VM, CreateSandbox's message classes): a
   * guest waiting in a warm pool has it done when its sandbox comes.
   */
  prepare(): void {
    this.cgroups();
    noteMounts();
    if (this.options.primeCreate) primeCodecs(agentService, ['CreateSandbox']);
  }

  private cgroups() {
    if (this.cgroupDriver === null) this.cgroupDriver = detectCgroups(this.options.cgroups, this.options.log, { forRunc: this.options.oci?.name === 'runc' });
    return this.cgroupDriver;
  }

  private supervisor(): Supervisor {
    if (!this.sandbox) throw new GuestError('FailedPrecondition', 'the sandbox is not created: call CreateSandbox first');
    return this.sandbox.supervisor;
  }

  readonly agent: Handlers<AgentServiceMethods> = {
    CreateSandbox: async (req) => {
      if (this.sandbox || this.creating) throw new GuestError('AlreadyExists', `sandbox ${this.sandbox?.id ?? ''} already exists: one sandbox per agent`);
      const id = req.sandbox_id || req.hostname || 'sandbox';
      this.creating = true;
      let mounts: string[];
      try {
        mounts = await mountStorages(req.storages ?? [], this.options.log);
      } finally {
        this.creating = false;
      }
      if (this.options.setHostname && req.hostname) writeFileSync('/proc/sys/kernel/hostname', req.hostname.slice(0, 64));
      const supervisor = new Supervisor({
        group: groupName(id),
        cgroups: this.cgroups(),
        reaper: this.reaper,
        log: this.options.log,
        ...(this.options.oci ? { oci: this.options.oci, stateDir: this.options.stateDir } : {}),
      });
      this.sandbox = { id, hostname: req.hostname ?? '', supervisor, mounts };
      this.options.log.info('sandbox created', { sandboxId: id, cgroups: supervisor.cgroupVersion ?? 'none', reaper: !!this.reaper, oci: supervisor.ociRuntime ?? 'none' });
      return {};
    },
    DestroySandbox: async () => {
      const sandbox = this.sandbox;
      if (!sandbox) return {};
      this.sandbox = undefined;
      this.stockContainers.clear();
      await sandbox.supervisor.destroy();
      await this.reaper?.stop();
      for (const dir of sandbox.mounts.reverse()) await unmount(dir);
      this.options.log.info('sandbox destroyed', { sandboxId: sandbox.id });
      return {};
    },
    CreateContainer: async (req) => {
      const sup = this.supervisor();
      const id = req.container_id ?? '';
      const spec = req.OCI;
      if (!spec?.Process) throw new GuestError('InvalidArgument', `container ${id}: missing OCI specification (process)`);
      if (this.options.stock) await this.stockCreateChecks(id, spec);
      if (req.storages?.length || req.devices?.length) this.options.log.warn('storages and devices are not handled by this agent', { containerId: id });
      await sup.createContainer({
        id,
        initId: req.exec_id || id,
        root: spec.Root?.Path ?? '',
        process: processSpec(spec.Process, req.string_user),
        resources: resourcesOf(spec.Linux?.Resources),
        hostname: spec.Hostname || this.sandbox!.hostname,
        privileged: confinementOf(spec),
      });
      if (this.options.stock) {
        const cgroupMount = (spec.Mounts ?? []).some((m) => m.destination === '/sys/fs/cgroup');
        this.stockContainers.set(id, { initId: req.exec_id || id, cgroupMount });
      }
      return {};
    },
    StartContainer: async (req, ctx) => {
      const id = req.container_id ?? '';
      const pid = await this.supervisor().startContainer(id);
      const stock = this.stockContainers.get(id);
      if (stock) stock.initPid = pid;
      // Our extension: the stock agent's replies carry no pid.
      if (!this.options.stock) ctx.trailer.set(PID_TRAILER, String(pid));
      return {};
    },
    ExecProcess: async (req, ctx) => {
      if (!req.process) throw new GuestError('InvalidArgument', 'exec without a process');
      const id = req.container_id ?? '';
      const sup = this.supervisor();
      if (this.options.stock && this.stockContainers.get(id)?.cgroupMount === false && sup.state(id) !== 'stopped') {
        // libcontainer's init in the container statfs()es its cgroup mount at every exec.
        throw new RpcError(status.UNKNOWN, `container_linux.go: starting container process caused: container init panicked: cannot statfs cgroup root`);
      }
      const pid = await sup.exec(id, req.exec_id ?? '', processSpec(req.process, req.string_user));
      if (!this.options.stock) ctx.trailer.set(PID_TRAILER, String(pid));
      return {};
    },
    SignalProcess: async (req) => {
      const id = req.container_id ?? '';
      let signal = req.signal ?? 0;
      const stock = this.stockContainers.get(id);
      // The stock agent turns a SIGTERM for an init that does not catch it into SIGKILL
      // (as its pid namespace's init it would ignore SIGTERM): the exit then says 137.
      if (stock && signal === SIGTERM && req.exec_id === stock.initId && stock.initPid !== undefined && !catches(stock.initPid, SIGTERM)) signal = SIGKILL;
      await this.supervisor().signal(id, req.exec_id ?? '', signal);
      return {};
    },
    WaitProcess: async (req, ctx) => ({ status: await this.supervisor().wait(req.container_id ?? '', req.exec_id ?? '', ctx.signal) }),
    ListProcesses: async (req) => ({
      process_list: await this.supervisor().listProcesses(req.container_id ?? '', req.format ?? '', req.args ?? []),
    }),
    WriteStdin: async (req) => ({ len: await this.supervisor().write(req.container_id ?? '', req.exec_id ?? '', req.data ?? new Uint8Array()) }),
    ReadStdout: async (req, ctx) => ({ data: this.streamData(await this.supervisor().read(req.container_id ?? '', req.exec_id ?? '', 'stdout', req.len ?? 0, ctx.signal)) }),
    ReadStderr: async (req, ctx) => ({ data: this.streamData(await this.supervisor().read(req.container_id ?? '', req.exec_id ?? '', 'stderr', req.len ?? 0, ctx.signal)) }),
    CloseStdin: (req) => {
      this.supervisor().closeStdin(req.container_id ?? '', req.exec_id ?? '');
      return {};
    },
    TtyWinResize: async (req) => {
      await this.supervisor().resize(req.container_id ?? '', req.exec_id ?? '', req.row ?? 0, req.column ?? 0);
      return {};
    },
    RemoveContainer: async (req) => {
      await this.supervisor().removeContainer(req.container_id ?? '', req.timeout ?? 0);
      this.stockContainers.delete(req.container_id ?? '');
      return {};
    },
    UpdateContainer: (req) => {
      const resources = resourcesOf(req.resources);
      if (resources) this.supervisor().updateContainer(req.container_id ?? '', resources);
      else this.supervisor().state(req.container_id ?? '');
      return {};
    },
    StatsContainer: (req) => ({ cgroup_stats: statsMessage(this.supervisor().stats(req.container_id ?? '')) }),
    PauseContainer: async (req) => {
      const id = req.container_id ?? '';
      if (this.options.stock) {
        const state = this.supervisor().state(id);
        // libcontainer's refusal, which the stock agent passes on as code Unknown.
        if (state !== 'running' && state !== 'created') throw new RpcError(status.UNKNOWN, `container not running or created: ${state}`);
      }
      await this.supervisor().pause(id);
      return {};
    },
    ResumeContainer: async (req) => {
      const id = req.container_id ?? '';
      if (this.options.stock && this.supervisor().state(id) !== 'paused') throw new RpcError(status.UNKNOWN, 'container not paused');
      await this.supervisor().resume(id);
      return {};
    },
    OnlineCPUMem: (req) => {
      // The guest shares its kernel with the host: there is nothing hot-plugged to online.
      this.options.log.debug('online cpu/mem requested', { cpus: req.nb_cpus, wait: req.wait });
      return {};
    },
    ReseedRandomDev: async (req) => {
      if (req.data?.length) await writeFile('/dev/urandom', req.data);
      return {};
    },
    // The stock agent 1.12 serves neither AddInterface nor RemoveInterface either.
    AddInterface: () => {
      throw unimplemented();
    },
    UpdateInterface: () => {
      throw unimplemented();
    },
    RemoveInterface: () => {
      throw unimplemented();
    },
    UpdateRoutes: () => {
      throw unimplemented();
    },
  };

  /** Read data; in stock mode the end of a stream is an error whose message is EOF. */
  private streamData(data: Uint8Array): Uint8Array {
    if (this.options.stock && data.byteLength === 0) throw new RpcError(status.UNKNOWN, 'EOF');
    return data;
  }

  /** What the stock agent refuses (or dies of) before it creates a container. */
  private async stockCreateChecks(id: string, spec: NonNullable<AgentServiceMethods['CreateContainer']['request']['OCI']>): Promise<void> {
    if (!spec.Linux?.Resources) {
      // It dereferences spec.Linux.Resources without a check: a nil pointer panic ends the agent.
      await this.options.die?.(`panic: runtime error: invalid memory address or nil pointer dereference (CreateContainer ${id}: the OCI spec has no Linux.Resources)`);
      throw new RpcError(status.INTERNAL, 'the agent died');
    }
    const root = spec.Root?.Path ?? '';
    let isDir = false;
    try {
      isDir = root !== '' && statSync(root).isDirectory();
    } catch {
      // absent
    }
    if (!isDir) throw new RpcError(status.UNKNOWN, `rootfs (${JSON.stringify(root)}) does not exist`);
  }

  readonly health: Handlers<HealthMethods> = {
    Check: () => ({ status: ServingStatus.SERVING }),
    Version: () => ({ grpc_version: API_VERSION, agent_version: AGENT_VERSION }),
  };

  /** Kills everything at agent exit. */
  async shutdown(): Promise<void> {
    await this.agent.DestroySandbox({}, { signal: new AbortController().signal, trailer: new Metadata() });
    await this.reaper?.stop();
  }
}

/** grpc-js implementations from typed handlers: errors become statuses, cancellation aborts. */
export function implementation<T extends { [M in keyof T]: { request: unknown; response: unknown } }>(
  handlers: Handlers<T>,
  log: GuestLog,
): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const name of Object.keys(handlers) as (keyof T & string)[]) {
    const handler = handlers[name];
    impl[name] = (call: ServerUnaryCall<T[typeof name]['request'], T[typeof name]['response']>, callback: sendUnaryData<T[typeof name]['response']>) => {
      const abort = new AbortController();
      call.once('cancelled', () => abort.abort(new Error('cancelled by the caller')));
      const trailer = new Metadata();
      Promise.resolve()
        .then(() => handler(call.request, { signal: abort.signal, trailer }))
        .then(
          (response) => callback(null, response, trailer),
          (err: unknown) => {
            if (abort.signal.aborted) return;
            if (err instanceof RpcError) return callback({ code: err.code, details: err.message });
            const e = toGuestError(err);
            if (e.code === 'Internal') log.warn('rpc failed', { method: name, err: e.message });
            callback({ code: grpcCode[e.code], details: e.message });
          },
        );
    };
  }
  return impl;
}

export type { AgentMethod, HealthMethod };
