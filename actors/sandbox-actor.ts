// The sandbox actor: one root statechart actor per sandbox (machines/sandbox.ts) with
// its operations provided, its agent actor and its backend. Commands that change state
// run one at a time (the reference's exclusive flock); reads (status, ps, wait) do not
// queue behind them. Lifecycle notices become bus events through the host's publisher.
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { createActor, waitFor, type Actor, type InspectionEvent } from 'xstate';
import type { Logger } from 'pino';
import { failedPrecondition, notFound, alreadyExists, VcError, toVcError, deadlineExceeded, invalidArgument, unavailable, ErrorCode, isErrorCode } from '../bus/errors.js';
import type * as Bus from '../bus/messages.gen.js';
import { checkId } from '../bus/subjects.js';
import {
  containerRef,
  sandboxMachine,
  type LifecycleEmitted,
  type SandboxCommand,
  type SandboxEvent,
  type SandboxSnapshot,
} from '../machines/sandbox.js';
import type { ContainerActorRef, ContainerCommand } from '../machines/container.js';
import type { CheckFailure } from '../machines/monitor.js';
import type { ErrorSummary, LifecycleNotice, FailureReason } from '../machines/lifecycle.js';
import type { AgentType, BackendType, ContainerSpec, SandboxSpec } from '../machines/specs.js';
import { AgentActor } from './agents/agent-actor.js';
import { defaultPsArgs, type Agent, type ContainerStats, type ExitInfo, type GuestEndpoint, type ProcessSpec } from './agents/agent.js';
import type { Backend } from './backends/backend.js';
import { decodeAgentConfig } from './agents/agent-type.js';
import { OutputLog } from './output-log.js';
import { containerStatus, sandboxStatus } from './sandbox-status.js';
import type { SandboxLogic } from './sandbox-logic.js';
import { sandboxStatesFor } from '../machines/preconditions.js';

/** What a sandbox actor needs from the host that runs it. */
export type { SandboxLogic };

export interface SandboxEnv {
  host: string;
  /** The provided sandbox statechart (see sandboxLogic), shared by every sandbox of the host. */
  logic: SandboxLogic;
  log: Logger;
  runDir(sandboxId: string): string;
  createAgent(type: AgentType): Agent;
  createBackend(type: BackendType): Backend;
  /** Publishes one numbered lifecycle event; resolves once it is stored. */
  publish(sandbox: SandboxActor, seq: number, notice: LifecycleNotice): Promise<void>;
  /** Stores the sandbox record (or removes it when the sandbox is gone). */
  persist(sandbox: SandboxActor): Promise<void>;
  /** The sandbox is gone: drop it from the registry. */
  forget(sandbox: SandboxActor): void;
  /** When set, every snapshot of the sandbox's actors is handed over for live inspection. */
  inspect?(sandbox: SandboxActor, inspection: Bus.Inspection): void;
}

const now = () => new Date().toISOString();
const readStatus = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
};
const MAX_REMEMBERED_EXEC_EXITS = 256;

function errorFrom(summary: ErrorSummary | undefined, prefix = ''): VcError | undefined {
  if (!summary) return undefined;
  const code = isErrorCode(summary.code) ? summary.code : ErrorCode.Internal;
  return new VcError(code, prefix + summary.message);
}

export class SandboxActor {
  readonly id: string;
  /** Distinguishes this incarnation of the id: in event de-duplication ids and host cgroup names. */
  readonly uid = randomBytes(6).toString('hex');
  readonly agent: AgentActor;
  readonly backend: Backend;
  private readonly actor: Actor<typeof sandboxMachine>;
  private tail: Promise<unknown> | undefined;
  private inflight: Set<Promise<void>> | undefined;
  private persisting: Promise<void> | undefined;
  private persistAgain = false;
  private execExits: Map<string, ExitInfo & { containerId: string }> | undefined;
  private endpoint: GuestEndpoint = {};
  private output: OutputLog | undefined;
  private guestExitSeen = false;

  constructor(
    readonly spec: SandboxSpec,
    private readonly env: SandboxEnv,
    readonly createdAt = now(),
  ) {
    this.id = spec.id;

    this.agent = new AgentActor(env.createAgent(spec.agent), spec.id);
    this.backend = env.createBackend(spec.backend);
    this.backend.onExit((exit) => this.guestExited(exit.status, exit.signal, exit.at));
    const inspect = env.inspect;
    this.actor = createActor(env.logic, {
      input: { spec, createdAt: this.createdAt },
      id: spec.id,
      inspect: inspect
        ? (e: InspectionEvent) => {
            if (e.type !== '@xstate.snapshot') return;
            const snap = e.snapshot as { value?: unknown; status?: string };
            inspect(this, {
              sandboxId: this.id,
              actorId: (e.actorRef as { id?: string }).id ?? '',
              event: e.event.type,
              state: JSON.stringify(snap.value ?? null),
              status: snap.status ?? '',
              time: now(),
            });
          }
        : undefined,
    });
    this.actor.on('lifecycle', (e: LifecycleEmitted) => this.onLifecycle(e));
  }

  /** Starts the statechart (which begins creating). The registry must know us first. */
  activate(): this {
    this.actor.start();
    return this;
  }

  /** Created on first use: an idle sandbox holds no logger of its own. */
  get log(): Logger {
    return this.env.log.child({ sandboxId: this.id });
  }

  // ---- operations the statecharts invoke (wired once per host by sandboxLogic) ----

  /** Boots the guest and sets the sandbox up in it; on failure leaves nothing behind. */
  /** @internal */ async bootSandbox(first: boolean): Promise<void> {
    try {
      const driver = this.agent.driver;
      if (first) {
        await driver.init({
          sandbox: this.spec,
          config: decodeAgentConfig(this.spec.agent, this.spec.agentConfig),
          runDir: this.env.runDir(this.id),
          log: this.log,
          listener: {
            processExited: (cid, execId, exit) => this.processExited(cid, execId, exit),
            output: (cid, execId, stream, data) => this.outputLog().append(cid, execId, stream, data),
            connectionLost: (message) => this.agent.connectionLost(message),
          },
        });
      }
      const plan = (await driver.createSandbox()) ?? { endpoint: {}, command: [], env: {} };
      const incarnation = { host: this.env.host, uid: this.uid };
      this.guestExitSeen = false;
      this.endpoint = await this.backend.boot({ sandbox: this.spec, incarnation, runDir: this.env.runDir(this.id), plan });
      await this.agent.call((a) => a.startSandbox(this.endpoint));
    } catch (err) {
      await this.teardownGuest().catch(() => {});
      throw toVcError(err);
    }
  }

  /** Drives every container in a given state through one command, in creation order. */
  /** @internal */ async forEachContainer(command: ContainerCommand, when: (state: string) => boolean): Promise<void> {
    for (const ref of this.containers()) {
      const snap = ref.getSnapshot();
      if (!when(String(snap.value))) continue;
      const after = await this.settleContainer(ref, command);
      const err = errorFrom(after.context.lastError, `container ${ref.id}: `);
      if (err) throw err;
    }
  }

  /** @internal */ async stopGuest(): Promise<void> {
    let firstError: VcError | undefined;
    for (const ref of this.containers()) {
      if (String(ref.getSnapshot().value) === 'stopped') continue;
      const after = await this.settleContainer(ref, 'STOP');
      firstError ??= errorFrom(after.context.lastError, `container ${ref.id}: `);
    }
    if (!this.agent.isDead()) {
      await this.agent.call((a) => a.stopSandbox()).catch((err) => {
        firstError ??= toVcError(err);
      });
    }
    await this.teardownGuest();
    if (firstError) throw firstError;
  }

  private async teardownGuest(): Promise<void> {
    await this.agent.driver.disconnect().catch((err) => this.log.warn({ err }, 'agent disconnect failed'));
    await this.backend.shutdown();
  }

  private outputLog(): OutputLog {
    return (this.output ??= new OutputLog(join(this.env.runDir(this.id), 'logs')));
  }

  /** @internal */ async releaseSandbox(): Promise<void> {
    for (const ref of this.containers()) {
      if (ref.getSnapshot().can({ type: 'STOP' }) && String(ref.getSnapshot().value) !== 'stopped') {
        await this.settleContainer(ref, 'STOP');
      }
      await this.settleContainer(ref, 'DELETE');
    }
    if (!this.agent.isDead() && this.backend.pid !== undefined) {
      await this.agent.call((a) => a.stopSandbox()).catch((err) => this.log.warn({ err }, 'stopSandbox during delete failed'));
    }
    await this.teardownGuest();
    await this.agent.release().catch(() => {});
    await this.output?.close(true);
    rmSync(this.env.runDir(this.id), { recursive: true, force: true });
  }

  private async settleContainer(ref: ContainerActorRef, command: ContainerCommand) {
    ref.send({ type: command });
    return waitFor(ref, (s) => !s.hasTag('busy'), { timeout: Infinity });
  }

  private containers(): ContainerActorRef[] {
    const snap = this.snapshot();
    return snap.context.containerIds.map((id) => containerRef(snap, id)).filter((r): r is ContainerActorRef => !!r);
  }

  // ---- notifications from the guest -----------------------------------------------

  private processExited(containerId: string, execId: string, exit: ExitInfo): void {
    const ref = containerRef(this.snapshot(), containerId);
    if (!execId || execId === containerId) {
      ref?.send({ type: 'PROCESS_EXITED', status: exit.exitStatus, at: exit.exitedAt });
      return;
    }
    this.rememberExecExit(execId, { ...exit, containerId });
    ref?.send({ type: 'EXEC_EXITED', execId, status: exit.exitStatus, at: exit.exitedAt });
  }

  private rememberExecExit(execId: string, exit: ExitInfo & { containerId: string }): void {
    this.execExits ??= new Map();
    this.execExits.set(execId, exit);
    if (this.execExits.size > MAX_REMEMBERED_EXEC_EXITS) {
      const oldest = this.execExits.keys().next().value;
      if (oldest !== undefined) this.execExits.delete(oldest);
    }
  }

  private guestExited(status: number, signal: string | undefined, at: string): void {
    this.guestExitSeen = true;
    const how = signal ? `killed by ${signal}` : `exited with status ${status}`;
    this.fail('guest-exited', `the guest agent ${how}`, at, status);
  }

  /**
   * A connection lost because the guest died is its exit, not an unreachable agent: while
   * the guest's first process is gone but its exit not yet reported (a pid namespace takes a
   * moment to end), wait for that report, within `ms`.
   */
  private async guestExitReported(ms: number): Promise<void> {
    const pid = this.backend.pid;
    if (pid === undefined || this.guestExitSeen) return;
    const gone = () => !/^State:\s+[^Z]/m.test(readStatus(pid));
    for (let waited = 0; gone() && !this.guestExitSeen && waited < ms; waited += 10) await sleep(10);
  }

  /** The guest died or stopped answering: mark the agent dead and the sandbox failed. */
  fail(reason: FailureReason, message: string, at = now(), exitStatus?: number): boolean {
    const event = { type: 'GUEST_FAILED' as const, reason, message, at, exitStatus };
    if (!this.snapshot().can(event)) return false;
    // Entering failed marks the agent dead (onFailed), on this path and the monitor's.
    this.actor.send(event);
    return true;
  }

  /**
   * One monitor check: the agent must answer within the deadline. Rejects with a
   * CheckFailure saying whether the guest did not answer in time or could not be reached.
   */
  async checkGuest(deadlineMs: number): Promise<void> {
    if (this.agent.isDead()) await this.guestExitReported(deadlineMs);
    if (this.agent.isDead()) throw { reason: 'agent-unreachable', message: 'the agent is marked dead', at: now() } satisfies CheckFailure;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject({ reason: 'check-timeout', message: `the agent did not answer a health check within ${deadlineMs} ms`, at: now() } satisfies CheckFailure),
        deadlineMs,
      );
    });
    try {
      await Promise.race([this.agent.call((a) => a.check(deadlineMs)), expired]);
    } catch (err) {
      if ((err as Partial<CheckFailure>).reason) throw err;
      const e = toVcError(err);
      const reason = e.code === ErrorCode.DeadlineExceeded ? 'check-timeout' : 'agent-unreachable';
      throw { reason, message: `health check failed: ${e.message}`, at: now() } satisfies CheckFailure;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The sandbox entered failed: no guest call may wait on it any more; apply the policy. */
  private onFailed(): void {
    if (!this.agent.isDead()) this.agent.markDead(this.snapshot().context.failure?.reason ?? 'failed');
    const failure = this.snapshot().context.failure;
    this.log.warn({ reason: failure?.reason, message: failure?.message }, 'sandbox failed');
    if (this.spec.monitor.policy === 'stop-and-delete') {
      void this.delete().catch((err) => this.log.error({ err }, 'stop-and-delete after failure did not finish'));
    }
  }

  // ---- events and persistence ------------------------------------------------------

  private onLifecycle(e: LifecycleEmitted): void {
    if (e.notice.type === 'fail' && !e.notice.containerId) queueMicrotask(() => this.onFailed());
    const p = this.env.publish(this, e.seq, e.notice).catch((err) => {
      this.log.error({ err, seq: e.seq, type: e.notice.type }, 'event publish failed');
    });
    const inflight = (this.inflight ??= new Set());
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
    this.schedulePersist();
  }

  private schedulePersist(): void {
    if (this.persisting) {
      this.persistAgain = true;
      return;
    }
    this.persisting = (async () => {
      do {
        this.persistAgain = false;
        await new Promise<void>((r) => setImmediate(r));
        await this.env.persist(this).catch((err) => this.log.error({ err }, 'sandbox record not stored'));
      } while (this.persistAgain);
      this.persisting = undefined;
    })();
  }

  /** Waits until every event so far is stored and the record is written. */
  private async flush(): Promise<void> {
    while (this.inflight && this.inflight.size > 0) await Promise.all(this.inflight);
    while (this.persisting) await this.persisting;
  }

  // ---- commands ---------------------------------------------------------------------

  snapshot(): SandboxSnapshot {
    return this.actor.getSnapshot();
  }

  get state(): string {
    return String(this.snapshot().value);
  }

  get deleted(): boolean {
    return this.snapshot().status === 'done';
  }

  /** Runs state-changing commands one at a time. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail ? this.tail.then(fn, fn) : fn();
    const tail = run.catch(() => {});
    this.tail = tail;
    // An idle sandbox keeps no promise chain.
    void tail.then(() => {
      if (this.tail === tail) this.tail = undefined;
    });
    return run;
  }

  private requireSandbox(command: SandboxCommand | SandboxEvent, verb: string): void {
    const snap = this.snapshot();
    if (snap.status === 'done') throw notFound(`sandbox ${this.id} does not exist`);
    if (!snap.can((typeof command === 'string' ? { type: command } : command) as SandboxEvent)) {
      throw failedPrecondition(`cannot ${verb} sandbox ${this.id} while it is ${this.state}`, this.state);
    }
  }

  /** Sends a sandbox command and waits until the sandbox settles; throws what it recorded. */
  private async runSandbox(command: Exclude<SandboxCommand, 'CREATE_CONTAINER'>, verb: string): Promise<Bus.SandboxStatus> {
    this.requireSandbox(command, verb);
    this.actor.send({ type: command });
    const after = await waitFor(this.actor, (s) => !s.hasTag('busy'), { timeout: Infinity });
    await this.flush();
    const err = errorFrom(after.context.lastError);
    if (err) throw err;
    return this.status();
  }

  /** Waits for creation (the guest boot and the spec's containers). */
  create(): Promise<Bus.SandboxStatus> {
    return this.exclusive(async () => {
      const after = await waitFor(this.actor, (s) => !s.hasTag('busy'), { timeout: Infinity });
      for (const ref of this.containers()) await waitFor(ref, (s) => !s.hasTag('busy'), { timeout: Infinity });
      await this.flush();
      if (after.status === 'done') {
        await this.env.persist(this).catch((err) => this.log.error({ err }, 'claim not released'));
        this.env.forget(this);
        throw errorFrom(after.context.lastError, `sandbox ${this.id} not created: `) ?? new VcError(ErrorCode.Internal, 'sandbox not created');
      }
      const failed = this.containers().find((r) => r.getSnapshot().status === 'done');
      if (failed) throw errorFrom(failed.getSnapshot().context.lastError, `container ${failed.id} not created: `)!;
      return this.status();
    });
  }

  start = () => this.exclusive(() => this.runSandbox('START', 'start'));
  stop = () => this.exclusive(() => this.runSandbox('STOP', 'stop'));
  pause = () => this.exclusive(() => this.runSandbox('PAUSE', 'pause'));
  resume = () => this.exclusive(() => this.runSandbox('RESUME', 'resume'));

  delete(force = false): Promise<void> {
    return this.exclusive(async () => {
      if (force && (this.state === 'running' || this.state === 'paused')) await this.runSandbox('STOP', 'stop');
      await this.runSandbox('DELETE', 'delete').catch((err) => {
        if (this.deleted) return;
        throw err;
      });
      this.env.forget(this);
      await this.flush();
    });
  }

  onlineCpuMem(cpus: number): Promise<void> {
    return this.exclusive(async () => {
      this.requireSandbox('ONLINE_CPU_MEM', 'online cpus and memory of');
      await this.agent.call((a) => a.onlineCPUMem(cpus));
    });
  }

  createContainer(spec: ContainerSpec): Promise<Bus.ContainerStatus> {
    return this.exclusive(async () => {
      if (this.snapshot().context.containerIds.includes(spec.id)) {
        throw alreadyExists(`container ${spec.id} already exists in sandbox ${this.id}`);
      }
      const event = { type: 'CREATE_CONTAINER' as const, spec };
      this.requireSandbox(event, 'create a container in');
      this.actor.send(event);
      const ref = containerRef(this.snapshot(), spec.id);
      if (!ref) throw new VcError(ErrorCode.Internal, `container ${spec.id} was not spawned`);
      const after = await waitFor(ref, (s) => !s.hasTag('busy'), { timeout: Infinity });
      await this.flush();
      if (after.status === 'done') throw errorFrom(after.context.lastError, `container ${spec.id} not created: `)!;
      return containerStatus(ref);
    });
  }

  private container(cid: string): ContainerActorRef {
    const ref = containerRef(this.snapshot(), checkId('container', cid));
    if (!ref || ref.getSnapshot().status === 'done') throw notFound(`container ${cid} does not exist in sandbox ${this.id}`);
    return ref;
  }

  /** Checks both preconditions of a container command: the sandbox's state and the container's. */
  private requireContainer(ref: ContainerActorRef, command: ContainerCommand, verb: string): void {
    const sandboxStates = sandboxStatesFor(command);
    if (!sandboxStates.includes(this.state)) {
      throw failedPrecondition(
        `cannot ${verb} container ${ref.id}: sandbox ${this.id} is ${this.state} (needs ${sandboxStates.join(' or ')})`,
        this.state,
      );
    }
    const snap = ref.getSnapshot();
    if (!snap.can({ type: command } as never)) {
      throw failedPrecondition(`cannot ${verb} container ${ref.id} while it is ${String(snap.value)}`, String(snap.value));
    }
  }

  private async runContainer(cid: string, command: ContainerCommand, verb: string): Promise<Bus.ContainerStatus> {
    const ref = this.container(cid);
    this.requireContainer(ref, command, verb);
    const after = await this.settleContainer(ref, command);
    await this.flush();
    const err = errorFrom(after.context.lastError);
    if (err) throw err;
    return containerStatus(ref);
  }

  startContainer = (cid: string) => this.exclusive(() => this.runContainer(cid, 'START', 'start'));
  stopContainer = (cid: string) => this.exclusive(() => this.runContainer(cid, 'STOP', 'stop'));
  pauseContainer = (cid: string) => this.exclusive(() => this.runContainer(cid, 'PAUSE', 'pause'));
  resumeContainer = (cid: string) => this.exclusive(() => this.runContainer(cid, 'RESUME', 'resume'));

  deleteContainer(cid: string, force = false): Promise<void> {
    return this.exclusive(async () => {
      const ref = this.container(cid);
      const state = String(ref.getSnapshot().value);
      if (force && state !== 'stopped' && ref.getSnapshot().can({ type: 'STOP' })) await this.runContainer(cid, 'STOP', 'stop');
      await this.runContainer(cid, 'DELETE', 'delete');
    });
  }

  killContainer(cid: string, signal: number, all: boolean): Promise<void> {
    return this.exclusive(async () => {
      if (!Number.isInteger(signal) || signal < 1 || signal > 64) throw invalidArgument(`signal ${signal} is not a signal number (1 to 64)`);
      const ref = this.container(cid);
      this.requireContainer(ref, 'KILL', 'kill');
      await this.agent.call((a) => a.killContainer(ref.id, signal, all));
    });
  }

  async exec(cid: string, request: Bus.ContainerExecRequest): Promise<{ execId: string; pid: number }> {
    const ref = this.container(cid);
    this.requireContainer(ref, 'EXEC', 'exec in');
    const execId = request.execId ? checkId('exec', request.execId) : `exec-${randomBytes(4).toString('hex')}`;
    if (execId === cid || ref.getSnapshot().children[execId]) throw alreadyExists(`exec ${execId} already exists in container ${cid}`);
    if (!request.args?.length) throw invalidArgument('exec needs args: the command to run');
    const process: ProcessSpec = {
      args: request.args,
      env: request.env ?? [],
      cwd: request.cwd ?? '',
      user: request.user ?? '',
      terminal: request.terminal ?? false,
    };
    ref.send({ type: 'EXEC_ADDED', execId });
    let result: { execId: string; pid: number };
    try {
      result = await this.agent.call((a) => a.exec(ref.id, process, execId));
    } catch (err) {
      ref.send({ type: 'EXEC_FAILED', execId });
      await this.flush();
      throw err;
    }
    ref.send({ type: 'EXEC_STARTED', execId: result.execId, pid: result.pid });
    await this.flush();
    return result;
  }

  async processList(cid: string, request: Bus.ContainerPsRequest): Promise<{ format: string; output: string }> {
    const format = request.format || 'table';
    if (format !== 'json' && format !== 'table') throw invalidArgument(`invalid format option ${JSON.stringify(format)}: use json or table`);
    const ref = this.container(cid);
    this.requireContainer(ref, 'PS', 'list processes of');
    const args = request.args?.length ? request.args : defaultPsArgs;
    const out = await this.agent.call((a) => a.processListContainer(ref.id, { format, args }));
    let output = Buffer.from(out).toString('utf8');
    if (format === 'json' && output === '') output = '[]';
    return { format, output };
  }

  /** Waits for the init process (or an exec) to exit; resolves at once if it already has. */
  async wait(cid: string, request: Bus.ContainerWaitRequest): Promise<ExitInfo> {
    const ref = this.container(cid);
    this.requireContainer(ref, 'WAIT', 'wait for');
    const timeout = request.timeoutMs || Infinity;
    const expired = () => deadlineExceeded(`no exit within ${request.timeoutMs} ms`);
    const execId = request.execId;
    if (execId && execId !== cid) {
      const known = this.execExits?.get(execId);
      if (known) return { exitStatus: known.exitStatus, exitedAt: known.exitedAt };
      const proc = ref.getSnapshot().children[execId] as Actor<never> | undefined;
      if (!proc) throw notFound(`exec ${execId} does not exist in container ${cid}`);
      await waitFor(proc as never, (s: { status: string }) => s.status === 'done', { timeout }).catch(() => {
        throw expired();
      });
      const exit = this.execExits?.get(execId);
      return exit ? { exitStatus: exit.exitStatus, exitedAt: exit.exitedAt } : { exitStatus: 255, exitedAt: now() };
    }
    const done = await waitFor(ref, (s) => s.context.exitStatus !== undefined && !s.hasTag('busy') && s.value !== 'running', { timeout }).catch(
      (err) => {
        if (err instanceof VcError) throw err;
        if (ref.getSnapshot().status === 'done') throw notFound(`container ${cid} was deleted before it exited`);
        throw expired();
      },
    );
    return { exitStatus: done.context.exitStatus ?? 255, exitedAt: done.context.exitedAt ?? '' };
  }

  /** What the init process (or an exec) wrote, stdout and stderr kept apart. */
  async logs(cid: string, request: Bus.ContainerLogsRequest): Promise<{ stdout: string; stderr: string; truncated: boolean }> {
    const ref = this.container(cid);
    return this.outputLog().read(ref.id, request.execId ?? '', request.tailBytes ?? 0);
  }

  async stats(cid: string): Promise<ContainerStats> {
    const ref = this.container(cid);
    this.requireContainer(ref, 'STATS', 'get stats of');
    return this.agent.call((a) => {
      if (!a.statsContainer) throw unavailable(`the ${a.type} agent reports no container stats`);
      return a.statsContainer(ref.id);
    });
  }

  containerStatus(cid: string): Bus.ContainerStatus {
    return containerStatus(this.container(cid));
  }

  status(): Bus.SandboxStatus {
    return sandboxStatus(this.snapshot(), { spec: this.spec, host: this.env.host, createdAt: this.createdAt, userNamespace: this.backend.userNamespace });
  }

  /** The statechart's persisted snapshot, stored with the sandbox record. */
  persistedSnapshot(): unknown {
    return this.actor.getPersistedSnapshot();
  }

  /** Stops the actor without touching the guest (host shutdown). */
  async detach(): Promise<void> {
    await this.tail?.catch(() => {});
    await this.flush();
    this.actor.stop();
  }
}
