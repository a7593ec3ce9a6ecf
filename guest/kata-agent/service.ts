// grpc.AgentService and grpc.Health on top of the supervisor, with the semantics of the
// 2018 agent: one sandbox per agent, containers from the OCI spec in the request,
// blocking waits and reads, FailedPrecondition for calls before CreateSandbox.
import { writeFile } from 'node:fs/promises';
import { Metadata, status, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { detectCgroups, GuestError, Reaper, Supervisor, toGuestError, type CgroupChoice, type GuestErrorCode, type GuestLog, type OciRuntime } from '../common/index.js';
import {
  API_VERSION,
  PID_TRAILER,
  ServingStatus,
  type AgentMethod,
  type AgentServiceMethods,
  type HealthMethod,
  type HealthMethods,
} from '../../protos/kata/index.js';
import { confinementOf, processSpec, resourcesOf, statsMessage } from './convert.js';

export const AGENT_VERSION = 'virtactors-kata-agent 0.1.0';

const grpcCode: Record<GuestErrorCode, status> = {
  NotFound: status.NOT_FOUND,
  AlreadyExists: status.ALREADY_EXISTS,
  FailedPrecondition: status.FAILED_PRECONDITION,
  InvalidArgument: status.INVALID_ARGUMENT,
  DeadlineExceeded: status.DEADLINE_EXCEEDED,
  Unavailable: status.UNAVAILABLE,
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

class Unimplemented extends Error {}

export interface AgentOptions {
  log: GuestLog;
  cgroups: CgroupChoice;
  /** Run processes in a reaping pid namespace (needed when the agent is PID 1). */
  reaper: boolean;
  /** The OCI runtime containers run through (undefined: not contained, a guest that is not root). */
  oci?: OciRuntime;
  /** The guest's state directory (bundles, the default root filesystem). */
  stateDir: string;
}

interface Sandbox {
  id: string;
  hostname: string;
  supervisor: Supervisor;
}

const groupName = (sandboxId: string) => `kata-${sandboxId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64)}-${process.pid}`;

export class KataAgent {
  private sandbox: Sandbox | undefined;
  private readonly reaper: Reaper | undefined;
  private cgroupDriver: ReturnType<typeof detectCgroups> | null = null;

  constructor(private readonly options: AgentOptions) {
    this.reaper = options.reaper ? new Reaper(options.log) : undefined;
  }

  private cgroups() {
    if (this.cgroupDriver === null) this.cgroupDriver = detectCgroups(this.options.cgroups, this.options.log);
    return this.cgroupDriver;
  }

  private supervisor(): Supervisor {
    if (!this.sandbox) throw new GuestError('FailedPrecondition', 'the sandbox is not created: call CreateSandbox first');
    return this.sandbox.supervisor;
  }

  readonly agent: Handlers<AgentServiceMethods> = {
    CreateSandbox: (req) => {
      if (this.sandbox) throw new GuestError('AlreadyExists', `sandbox ${this.sandbox.id} already exists: one sandbox per agent`);
      const id = req.sandbox_id || req.hostname || 'sandbox';
      if (req.storages?.length) this.options.log.warn('storages are not mounted by this agent', { count: req.storages.length });
      const supervisor = new Supervisor({
        group: groupName(id),
        cgroups: this.cgroups(),
        reaper: this.reaper,
        log: this.options.log,
        ...(this.options.oci ? { oci: this.options.oci, stateDir: this.options.stateDir } : {}),
      });
      this.sandbox = { id, hostname: req.hostname ?? '', supervisor };
      this.options.log.info('sandbox created', { sandboxId: id, cgroups: supervisor.cgroupVersion ?? 'none', reaper: !!this.reaper, oci: supervisor.ociRuntime ?? 'none' });
      return {};
    },
    DestroySandbox: async () => {
      const sandbox = this.sandbox;
      if (!sandbox) return {};
      this.sandbox = undefined;
      await sandbox.supervisor.destroy();
      await this.reaper?.stop();
      this.options.log.info('sandbox destroyed', { sandboxId: sandbox.id });
      return {};
    },
    CreateContainer: async (req) => {
      const sup = this.supervisor();
      const id = req.container_id ?? '';
      const spec = req.OCI;
      if (!spec?.Process) throw new GuestError('InvalidArgument', `container ${id}: missing OCI specification (process)`);
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
      return {};
    },
    StartContainer: async (req, ctx) => {
      const pid = await this.supervisor().startContainer(req.container_id ?? '');
      ctx.trailer.set(PID_TRAILER, String(pid));
      return {};
    },
    ExecProcess: async (req, ctx) => {
      if (!req.process) throw new GuestError('InvalidArgument', 'exec without a process');
      const pid = await this.supervisor().exec(req.container_id ?? '', req.exec_id ?? '', processSpec(req.process, req.string_user));
      ctx.trailer.set(PID_TRAILER, String(pid));
      return {};
    },
    SignalProcess: async (req) => {
      await this.supervisor().signal(req.container_id ?? '', req.exec_id ?? '', req.signal ?? 0);
      return {};
    },
    WaitProcess: async (req, ctx) => ({ status: await this.supervisor().wait(req.container_id ?? '', req.exec_id ?? '', ctx.signal) }),
    ListProcesses: async (req) => ({
      process_list: await this.supervisor().listProcesses(req.container_id ?? '', req.format ?? '', req.args ?? []),
    }),
    WriteStdin: async (req) => ({ len: await this.supervisor().write(req.container_id ?? '', req.exec_id ?? '', req.data ?? new Uint8Array()) }),
    ReadStdout: async (req, ctx) => ({ data: await this.supervisor().read(req.container_id ?? '', req.exec_id ?? '', 'stdout', req.len ?? 0, ctx.signal) }),
    ReadStderr: async (req, ctx) => ({ data: await this.supervisor().read(req.container_id ?? '', req.exec_id ?? '', 'stderr', req.len ?? 0, ctx.signal) }),
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
      await this.supervisor().pause(req.container_id ?? '');
      return {};
    },
    ResumeContainer: async (req) => {
      await this.supervisor().resume(req.container_id ?? '');
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
    AddInterface: () => {
      throw new Unimplemented('guest networking is set up by the sandbox backend, not by this agent');
    },
    UpdateInterface: () => {
      throw new Unimplemented('guest networking is set up by the sandbox backend, not by this agent');
    },
    RemoveInterface: () => {
      throw new Unimplemented('guest networking is set up by the sandbox backend, not by this agent');
    },
    UpdateRoutes: () => {
      throw new Unimplemented('guest networking is set up by the sandbox backend, not by this agent');
    },
  };

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
            if (err instanceof Unimplemented) return callback({ code: status.UNIMPLEMENTED, details: err.message });
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
