// One sandbox, assembled: its root statechart actor (the host's provided sandbox logic),
// its agent actor and backend, its operations (what the chart's actors do), its journal
// (events and record on the bus) and its command layer. It also takes what the guest
// reports on its own — exits, output, a lost connection, the guest's own death — to the
// statechart, and applies the failure policy.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import type { Logger } from 'pino';
import type * as Bus from '../bus/messages.gen.js';
import { containerRef, containerRefs, type LifecycleEmitted, type SandboxActorRef, type SandboxSnapshot } from '../machines/sandbox.js';
import type { ContainerActorRef } from '../machines/container.js';
import type { FailureReason } from '../machines/lifecycle.js';
import type { AgentType, BackendType, SandboxSpec } from '../machines/specs.js';
import { AgentActor } from './agents/agent-actor.js';
import type { AdoptedGuest, Agent, AgentListener, ExitInfo, GuestEndpoint } from './agents/agent.js';
import type { AttachRecord } from '../bus/store.js';
import { UNKNOWN_EXIT_STATUS } from '../machines/lifecycle.js';
import type { Backend } from './backends/backend.js';
import { OomCheck, type OomVerdict } from './oom-check.js';
import { OutputLog } from './output-log.js';
import { containerStatus, sandboxStatus } from './sandbox-status.js';
import type { SandboxLogic } from './sandbox-logic.js';
import { GuestOperations } from './sandbox-operations.js';
import { SandboxJournal, type PublishOutcome } from './sandbox-journal.js';
import { SandboxCommands, type SandboxHandle } from './sandbox-commands.js';

/** What a sandbox needs from the host that runs it. */
export interface SandboxEnv {
  host: string;
  /** The provided sandbox statechart (see sandboxLogic), shared by every sandbox of the host. */
  logic: SandboxLogic;
  log: Logger;
  runDir(sandboxId: string): string;
  createAgent(type: AgentType): Agent;
  createBackend(type: BackendType): Backend;
  /** Stores one event; resolves once the stream has it, or 'queued' when it waits in the outbox. */
  publish(event: Bus.Event, dedupId: string): Promise<PublishOutcome | void>;
  /** Why a change now could not be recorded (bus down, older events of the lane waiting), or undefined. */
  blocked?(lane: string): string | undefined;
  /** How many events of the lane wait in the outbox. */
  pending?(lane: string): number;
  /** Stores the sandbox record (or removes it when the sandbox is gone). */
  persist(sandbox: SandboxActor): Promise<void>;
  /** Bytes the record may still grow by before the bus refuses it (undefined: unchecked). */
  recordRoom?(sandbox: SandboxActor): number | undefined;
  /** The sandbox is gone: drop it from the registry. */
  forget(sandbox: SandboxActor): void;
  /** When set, every snapshot of the sandbox's actors is handed over for live inspection. */
  inspect?(sandbox: SandboxActor, inspection: Bus.Inspection): void;
  /** When set, receives XState's own inspection events too (the opt-in Stately inspector). */
  observe?(event: InspectionEvent): void;
}

/** Actor ids from the root down, joined by '/' (ids never contain '/'). */
function actorPath(ref: { id?: string; _parent?: unknown }): string {
  const ids: string[] = [];
  for (let r: { id?: string; _parent?: unknown } | undefined = ref; r; r = r._parent as typeof r) ids.push(r.id ?? '');
  return ids.reverse().join('/');
}

const now = () => new Date().toISOString();

/** What a restarted host restores a sandbox from: its record. */
export interface SandboxRestore {
  /** The statechart's persisted snapshot. */
  snapshot: unknown;
  attach: AttachRecord;
}

/**
 * The persisted snapshot without the deadlines of the commands that were running: an
 * operation the restore resumes gets its default time limits (those clients are gone).
 */
function withoutDeadlines(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutDeadlines);
  if (!value || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (k !== 'deadline') out[k] = withoutDeadlines(v);
  return out;
}

/** Container states whose init process was started and has not been seen to exit. */
const INIT_LIVE = new Set(['running', 'pausing', 'paused', 'resuming', 'stopping']);

export class SandboxActor implements SandboxHandle {
  readonly id: string;
  /** Distinguishes this incarnation of the id (event de-duplication ids, cgroups); a restore keeps it. */
  readonly uid: string;
  /** The backend reported the guest's exit (set once; a failed sandbox is not booted again). */
  private guestExitSeen = false;
  readonly agent: AgentActor;
  readonly backend: Backend;
  readonly operations: GuestOperations;
  readonly journal: SandboxJournal;
  readonly commands: SandboxCommands;
  private readonly actor: Actor<SandboxLogic>;
  private outputLog: OutputLog | undefined;
  private readonly oomCheck: OomCheck;
  /** Exits waiting for the guest's word on an OOM kill, and those queued behind them. */
  private exitsInFlight: Promise<void> | undefined;

  constructor(
    readonly spec: SandboxSpec,
    private readonly env: SandboxEnv,
    readonly createdAt = now(),
    /** Deadline of the command that creates it (ms since the epoch). */
    deadline?: number,
    /** Restores the sandbox from its record (a restarted host) instead of creating it. */
    private readonly restore?: SandboxRestore,
  ) {
    this.id = spec.id;
    this.uid = restore?.attach.incarnation ?? randomBytes(6).toString('hex');
    this.agent = new AgentActor(env.createAgent(spec.agent), spec.id);
    this.backend = env.createBackend(spec.backend);
    this.backend.onExit((exit) => this.guestExited(exit.status, exit.signal, exit.at));
    const listener: AgentListener = {
      processExited: (cid, execId, exit) => this.processExited(cid, execId, exit),
      output: (cid, execId, stream, data) => this.output().append(cid, execId, stream, data),
      connectionLost: (message) => this.agent.connectionLost(message),
    };
    const sandbox = this;
    this.operations = new GuestOperations({
      spec,
      agent: this.agent,
      backend: this.backend,
      runDir: env.runDir(spec.id),
      incarnation: { host: env.host, uid: this.uid },
      guestExitReported: () => this.guestExitSeen,
      listener,
      get log() {
        return sandbox.log;
      },
      output: () => this.output(),
      containers: () => containerRefs(this.snapshot()),
    });
    this.oomCheck = new OomCheck(this.backend, (cid) => (this.agent.driver.statsContainer ? this.operations.containerStats(cid, {}) : undefined));
    this.journal = new SandboxJournal(env.host, spec.id, this.uid, { publish: env.publish, persist: () => env.persist(this), blocked: env.blocked, pending: env.pending }, () => this.log);
    this.commands = new SandboxCommands(this);
    this.actor = createActor(env.logic, {
      input: { spec, createdAt: this.createdAt, deadline },
      // Restored children: containers, execs and the monitor as they were; an operation
      // that was running is run again (with its default limits) once the actor starts.
      ...(restore ? { snapshot: withoutDeadlines(restore.snapshot) as never } : {}),
      id: spec.id,
      // Snapshots for the bus (VC_INSPECT=1) and XState's raw events for the Stately hook.
      inspect: env.inspect || env.observe ? (e) => this.inspected(e) : undefined,
    });
    this.actor.on('lifecycle', (e: LifecycleEmitted) => this.onLifecycle(e));
    // A delete is written down as it begins: a host restarted half-way finishes it.
    let last = '';
    this.actor.subscribe({
      next: (snap) => {
        const value = typeof snap.value === 'string' ? snap.value : '';
        if (value === 'deleting' && last !== 'deleting') this.journal.schedulePersist();
        last = value;
      },
      error: () => {},
    });
  }

  /** Starts the statechart (which begins creating). The registry must know us first. */
  activate(): this {
    this.actor.start();
    return this;
  }

  /**
   * Reattach (a restarted host): takes the guest over, restores the statechart and
   * catches up with the guest. A guest that is gone fails the sandbox (guest-exited, 255
   * exits); exits that happened meanwhile are reported by the agent, each once. The
   * registry must know us first.
   */
  async reattach(): Promise<void> {
    const attach = this.restore!.attach;
    const endpoint = (attach.endpoint ?? {}) as GuestEndpoint;
    const runDir = this.env.runDir(this.id);
    // Only this host's own run directory is looked in (a record naming another is not followed).
    const sameRunDir = attach.runDir === runDir;
    if (!sameRunDir) this.log.warn({ recorded: attach.runDir, runDir }, 'reattach: the sandbox ran under another run directory: its guest cannot be reached');
    const alive = sameRunDir && (await this.backend.adopt({ sandbox: this.spec, incarnation: { host: this.env.host, uid: this.uid }, runDir, endpoint, pid: attach.guestPid }));
    await this.operations.adoptGuest(this.adoptedGuest(endpoint));
    this.activate();
    const state = this.state;
    if (!alive) {
      if (this.fail('guest-exited', 'the guest ended while no runtime was attached', now(), UNKNOWN_EXIT_STATUS)) this.log.warn('reattach: the guest is gone');
      return;
    }
    this.actor.send({ type: 'REATTACHED' });
    // A stop or delete that was under way is resumed by the restore and needs nothing more.
    if (['stopping', 'stopped', 'failed', 'deleting'].includes(state) || this.deleted) return;
    await this.operations.reconcileGuest({}).catch((err: unknown) => {
      this.log.warn({ err }, 'reattach: the guest does not answer');
      this.fail('agent-unreachable', `reattach: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  /** The containers of the restored statechart, as the driver must know them. */
  private adoptedGuest(endpoint: GuestEndpoint): AdoptedGuest {
    const containers = containerRefs(this.snapshot()).map((ref) => {
      const snap = ref.getSnapshot();
      const value = String(snap.value);
      const initLive = INIT_LIVE.has(value) && snap.context.exitStatus === undefined;
      return {
        spec: snap.context.spec,
        started: value !== 'creating' && value !== 'ready',
        running: initLive ? [snap.context.id, ...snap.context.execIds] : [...snap.context.execIds],
      };
    });
    return { endpoint, containers };
  }

  /** What a restarted host needs to find the guest again. */
  attachRecord(): AttachRecord {
    const endpoint = this.operations.guestEndpoint;
    const pid = this.backend.pid;
    return { incarnation: this.uid, runDir: this.env.runDir(this.id), backend: this.spec.backend, ...(Object.keys(endpoint).length ? { endpoint: { ...endpoint } } : {}), ...(pid !== undefined ? { guestPid: pid } : {}) };
  }

  /** Created on first use: an idle sandbox holds no logger of its own. */
  get log(): Logger {
    return this.env.log.child({ sandboxId: this.id });
  }

  get ref(): SandboxActorRef {
    return this.actor as unknown as SandboxActorRef;
  }

  snapshot(): SandboxSnapshot {
    return this.actor.getSnapshot();
  }

  get state(): string {
    return String(this.snapshot().value);
  }

  get deleted(): boolean {
    return this.snapshot().status === 'done';
  }

  recordRoom(): number | undefined {
    return this.env.recordRoom?.(this);
  }

  flush(): Promise<void> {
    return this.journal.flush();
  }

  output(): OutputLog {
    return (this.outputLog ??= new OutputLog(join(this.env.runDir(this.id), 'logs'), this.log));
  }

  async forget(): Promise<void> {
    // A sandbox that never got created releases its claim on the id.
    if (this.deleted) await this.env.persist(this).catch((err: unknown) => this.log.error({ err }, 'claim not released'));
    this.env.forget(this);
  }

  status(): Bus.SandboxStatus {
    return sandboxStatus(this.snapshot(), { spec: this.spec, host: this.env.host, createdAt: this.createdAt, backend: this.backend.status?.(), userNamespace: this.backend.userNamespace });
  }

  containerStatus(ref: ContainerActorRef): Bus.ContainerStatus {
    return containerStatus(ref);
  }

  /** The statechart's persisted snapshot, stored with the sandbox record. */
  persistedSnapshot(): unknown {
    return this.actor.getPersistedSnapshot();
  }

  /**
   * Stops the actor without touching the guest (host shutdown). Its invoked and spawned
   * actors stop with it, so every guest call in flight is aborted, and commands waiting
   * on it answer Unavailable; the events already emitted are still stored.
   */
  async detach(): Promise<void> {
    this.actor.stop();
    await this.commands.idle();
    await this.journal.flush().catch(() => {});
  }

  // ---- what the guest reports on its own -----------------------------------------------

  private processExited(containerId: string, execId: string, exit: ExitInfo): void {
    const verdict = this.oomCheck.judge(containerId, exit);
    if (!(verdict instanceof Promise) && !this.exitsInFlight) return this.deliverExit(containerId, execId, exit, verdict);
    // The guest is asked whether the OOM killer did it; later exits wait their turn.
    const next = (this.exitsInFlight ?? Promise.resolve()).then(() => verdict).then((v) => this.deliverExit(containerId, execId, exit, v));
    this.exitsInFlight = next;
    void next.finally(() => {
      if (this.exitsInFlight === next) this.exitsInFlight = undefined;
    });
  }

  private deliverExit(containerId: string, execId: string, exit: ExitInfo, oom: OomVerdict | undefined): void {
    const ref = containerRef(this.snapshot(), containerId);
    const news = { status: exit.exitStatus, at: exit.exitedAt, unknown: exit.exitStatusUnknown, ...oom };
    if (!execId || execId === containerId) ref?.send({ type: 'PROCESS_EXITED', ...news });
    else ref?.send({ type: 'EXEC_EXITED', execId, ...news });
  }

  private guestExited(status: number, signal: string | undefined, at: string): void {
    this.guestExitSeen = true;
    const how = signal ? `killed by ${signal}` : `exited with status ${status}`;
    this.fail('guest-exited', `the guest agent ${how}`, at, status);
  }

  /** The guest died or stopped answering: the sandbox fails (entering failed marks the agent dead). */
  fail(reason: FailureReason, message: string, at = now(), exitStatus?: number): boolean {
    const event = { type: 'GUEST_FAILED' as const, reason, message, at, exitStatus };
    // A detached sandbox (its host stopping) hears of its guest no more.
    if (this.snapshot().status !== 'active' || !this.snapshot().can(event)) return false;
    this.actor.send(event);
    return true;
  }

  /** The sandbox entered failed: no guest call may wait on it any more; apply the policy. */
  private onFailed(): void {
    const failure = this.snapshot().context.failure;
    if (!this.agent.isDead()) this.agent.markDead(failure?.reason ?? 'failed');
    this.log.warn({ reason: failure?.reason, message: failure?.message }, 'sandbox failed');
    if (this.spec.monitor.policy === 'stop-and-delete') {
      void this.commands.exclusive(() => this.commands.delete(false)).catch((err: unknown) => this.log.error({ err }, 'stop-and-delete after failure did not finish'));
    }
  }

  private onLifecycle(e: LifecycleEmitted): void {
    if (e.notice.type === 'fail' && !e.notice.containerId) queueMicrotask(() => this.onFailed());
    this.journal.record(e.seq, e.notice);
  }

  private inspected(e: InspectionEvent): void {
    this.env.observe?.(e);
    if (e.type !== '@xstate.snapshot' || !this.env.inspect) return;
    const snap = e.snapshot as { value?: unknown; status?: string };
    this.env.inspect(this, {
      sandboxId: this.id,
      actorId: (e.actorRef as { id?: string }).id ?? '',
      event: e.event.type,
      state: JSON.stringify(snap.value ?? null),
      status: snap.status ?? '',
      time: now(),
      path: actorPath(e.actorRef as { id?: string; _parent?: unknown }),
    });
  }
}

