// The command layer of one sandbox: every bus command that concerns it, as the
// runtime's handlers call it. Here, and only here, are the preconditions (the
// statecharts answer them: `snapshot.can(event)`, plus the reference's table of which
// sandbox states allow a container command) and the per-sandbox exclusivity (commands
// that change state run one at a time: the reference's exclusive lock). Each command
// becomes an event to the sandbox or container statechart; its reply waits until the
// chart settled and its events are stored.
import { randomBytes } from 'node:crypto';
import { waitFor, type AnyActorRef } from 'xstate';
import { alreadyExists, deadlineExceeded, ErrorCode, failedPrecondition, invalidArgument, notFound, resourceExhausted, unavailable, unimplemented, VcError } from '../bus/errors.js';
import { encode } from '../bus/codec.js';
import type * as Bus from '../bus/messages.gen.js';
import { checkId } from '../bus/subjects.js';
import { containerRef, type SandboxActorRef, type SandboxEvent, type SandboxSnapshot } from '../machines/sandbox.js';
import type { ContainerActorRef, ContainerEvent } from '../machines/container.js';
import { sandboxStatesFor } from '../machines/preconditions.js';
import type { ContainerSpec, ProcessSpec } from '../machines/specs.js';
import { withinDeadline } from './agents/calls.js';
import { defaultPsArgs, unknownExit, type Agent, type ContainerStats, type ExecResult, type ExitInfo } from './agents/agent.js';
import { errorFrom } from './sandbox-operations.js';
import { checkConsoleSize, checkEnv } from './sandbox-spec.js';
import type { OutputLog } from './output-log.js';

/** How long a command may take, and what ends it early. */
export interface CommandLimits {
  /** When the reply is due (ms since the epoch). */
  deadline?: number;
  /** Aborts when the host stops. */
  signal?: AbortSignal;
}

/** What the command layer needs of a sandbox. */
export interface SandboxHandle {
  readonly id: string;
  /** The sandbox's statechart actor. */
  readonly ref: SandboxActorRef;
  snapshot(): SandboxSnapshot;
  /** Resolves once the events so far are stored (rejects when one could not be). */
  flush(): Promise<void>;
  /** Bytes its record may still grow by before the bus refuses it (undefined: unchecked). */
  recordRoom(): number | undefined;
  status(): Bus.SandboxStatus;
  containerStatus(ref: ContainerActorRef): Bus.ContainerStatus;
  output(): OutputLog;
  /** Its agent, for calls outside the statecharts (a process's stdin). */
  readonly agent: { readonly driver: Agent };
  /** The sandbox's creation failed or it was deleted: the registry lets it go. */
  forget(): Promise<void>;
}

const notBusy = (s: { hasTag(tag: string): boolean }) => !s.hasTag('busy');
/** An exit as a wait reply carries it: unknown (255, marked) when nobody can tell the status. */
const exitInfo = (status: number | undefined, unknown: boolean | undefined, at: string | undefined): ExitInfo =>
  status === undefined || unknown ? unknownExit(at ?? '') : { exitStatus: status, exitedAt: at ?? '' };

/** The exit with what the runtime knows beyond its status (OOMKilled), when it knows it. */
const withReason = (info: ExitInfo, known: { reason?: string; message?: string }): ExitInfo => (known.reason ? { ...info, reason: known.reason, message: known.message ?? '' } : info);

/** What a container's actor adds to the record beside its spec (its state, times, exits), about. */
const CONTAINER_RECORD_OVERHEAD = 2048;

const stoppedError = () => unavailable('the host stopped serving before the command finished; its outcome is in the status once the host is back');

/** Waits until an actor leaves its -ing state; a host that stops the actor meanwhile ends the wait. */
async function settled<T extends AnyActorRef>(ref: T): Promise<ReturnType<T['getSnapshot']>> {
  try {
    return (await waitFor(ref, notBusy as never, { timeout: Infinity })) as ReturnType<T['getSnapshot']>;
  } catch (err) {
    if ((ref.getSnapshot() as { status: string }).status === 'stopped') throw stoppedError();
    throw err;
  }
}
/** Every character but NUL: the guest's argv, environment and paths are C strings. */
const hasNul = (s: string) => s.includes('\0');

export class SandboxCommands {
  private tail: Promise<unknown> | undefined;
  private opSeq = 0;

  constructor(private readonly sandbox: SandboxHandle) {}

  private get id(): string {
    return this.sandbox.id;
  }

  private get state(): string {
    return String(this.sandbox.snapshot().value);
  }

  /** Runs a command that changes state after the ones before it (reads do not queue). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail ? this.tail.then(fn, fn) : fn();
    const tail = run.catch(() => {});
    this.tail = tail;
    // An idle sandbox keeps no promise chain.
    void tail.then(() => {
      if (this.tail === tail) this.tail = undefined;
    });
    return run;
  }

  /** Waits for anything queued (a host that detaches lets running commands finish). */
  async idle(): Promise<void> {
    await this.tail?.catch(() => {});
  }

  // ---- preconditions -----------------------------------------------------------------

  private requireSandbox(event: SandboxEvent, verb: string): void {
    const snap = this.sandbox.snapshot();
    if (snap.status === 'done') throw notFound(`sandbox ${this.id} does not exist`);
    if (!snap.can(event)) throw failedPrecondition(`cannot ${verb} sandbox ${this.id} while it is ${this.state}`, this.state, 'sandbox');
  }

  private container(cid: string): ContainerActorRef {
    const ref = containerRef(this.sandbox.snapshot(), checkId('container', cid));
    if (!ref || ref.getSnapshot().status === 'done') throw notFound(`container ${cid} does not exist in sandbox ${this.id}`);
    return ref;
  }

  /** Both halves of a container command's precondition: the sandbox's state, then the container's. */
  private requireContainer(ref: ContainerActorRef, event: ContainerEvent, verb: string): void {
    const sandboxStates = sandboxStatesFor(event.type as Parameters<typeof sandboxStatesFor>[0]);
    if (!sandboxStates.includes(this.state)) {
      throw failedPrecondition(`cannot ${verb} container ${ref.id}: sandbox ${this.id} is ${this.state} (needs ${sandboxStates.join(' or ')})`, this.state, 'sandbox');
    }
    const snap = ref.getSnapshot();
    if (!snap.can(event)) throw failedPrecondition(`cannot ${verb} container ${ref.id} while it is ${String(snap.value)}`, String(snap.value), 'container');
  }

  private opId(name: string): string {
    return `op.${name}.${++this.opSeq}`;
  }

  /** Sends an event that spawns an operation child and resolves with its output. */
  private async operation<T>(ref: AnyActorRef, event: { opId: string } & (ContainerEvent | SandboxEvent)): Promise<T> {
    ref.send(event);
    const child = ref.getSnapshot().children[event.opId] as AnyActorRef | undefined;
    if (!child) throw new VcError(ErrorCode.Internal, `operation ${event.opId} of sandbox ${this.id} did not start`);
    // Rejects with the operation's error, or because the host stopped it.
    const done = (await waitFor(child, (s: { status: string }) => s.status !== 'active').catch((err: unknown) => {
      throw child.getSnapshot().status === 'stopped' ? stoppedError() : err;
    })) as { status: string; output: T };
    if (done.status === 'stopped') throw stoppedError();
    return done.output;
  }

  // ---- sandbox commands --------------------------------------------------------------

  /** Sends a sandbox command and waits until the sandbox settles; throws what it recorded. */
  private async runSandbox(event: SandboxEvent, verb: string): Promise<Bus.SandboxStatus> {
    this.requireSandbox(event, verb);
    this.sandbox.ref.send(event);
    const after = await settled(this.sandbox.ref);
    await this.sandbox.flush();
    const err = errorFrom(after.context.lastError);
    if (err) throw err;
    return this.sandbox.status();
  }

  /** Waits for creation (the guest boot and the spec's containers). */
  async create(): Promise<Bus.SandboxStatus> {
    const after = await settled(this.sandbox.ref);
    const snap = this.sandbox.snapshot();
    for (const id of snap.context.containerIds) {
      const ref = containerRef(snap, id);
      if (ref) await settled(ref);
    }
    await this.sandbox.flush();
    if (after.status === 'done') {
      await this.sandbox.forget();
      throw errorFrom(after.context.lastError, `sandbox ${this.id} not created: `) ?? new VcError(ErrorCode.Internal, 'sandbox not created');
    }
    for (const id of snap.context.containerIds) {
      const ref = containerRef(this.sandbox.snapshot(), id);
      if (!ref || ref.getSnapshot().status === 'done') {
        throw errorFrom(ref?.getSnapshot().context.lastError, `container ${id} not created: `) ?? notFound(`container ${id} not created`);
      }
    }
    return this.sandbox.status();
  }

  start(limits: CommandLimits = {}) {
    return this.runSandbox({ type: 'START', deadline: limits.deadline }, 'start');
  }

  stop(limits: CommandLimits = {}) {
    return this.runSandbox({ type: 'STOP', deadline: limits.deadline }, 'stop');
  }

  pause(limits: CommandLimits = {}) {
    return this.runSandbox({ type: 'PAUSE', deadline: limits.deadline }, 'pause');
  }

  resume(limits: CommandLimits = {}) {
    return this.runSandbox({ type: 'RESUME', deadline: limits.deadline }, 'resume');
  }

  async delete(force: boolean, limits: CommandLimits = {}): Promise<void> {
    if (force && (this.state === 'running' || this.state === 'paused')) await this.stop(limits);
    await this.runSandbox({ type: 'DELETE', deadline: limits.deadline }, 'delete').catch((err: unknown) => {
      if (this.sandbox.snapshot().status === 'done') return;
      throw err;
    });
    await this.sandbox.forget();
  }

  async onlineCpuMem(cpus: number, limits: CommandLimits = {}): Promise<void> {
    const event = { type: 'ONLINE_CPU_MEM' as const, opId: this.opId('onlineCpuMem'), cpus, deadline: limits.deadline };
    this.requireSandbox(event, 'online cpus and memory of');
    await this.operation(this.sandbox.ref, event);
  }

  // ---- container commands ------------------------------------------------------------

  async createContainer(spec: ContainerSpec, limits: CommandLimits = {}): Promise<Bus.ContainerStatus> {
    if (this.sandbox.snapshot().context.containerIds.includes(spec.id)) {
      throw alreadyExists(`container ${spec.id} already exists in sandbox ${this.id}`);
    }
    const event = { type: 'CREATE_CONTAINER' as const, spec, deadline: limits.deadline };
    this.requireSandbox(event, 'create a container in');
    this.requireRecordRoom(spec);
    this.sandbox.ref.send(event);
    const ref = containerRef(this.sandbox.snapshot(), spec.id);
    if (!ref) throw new VcError(ErrorCode.Internal, `container ${spec.id} was not spawned`);
    const after = await settled(ref);
    await this.sandbox.flush();
    if (after.status === 'done') throw errorFrom(after.context.lastError, `container ${spec.id} not created: `)!;
    return this.sandbox.containerStatus(ref);
  }

  /**
   * A container's spec is kept in the sandbox's record twice (its actor's context and its
   * status), and the record is one bus message: one that outgrew the server's max_payload
   * could never be stored again, so the container is refused before anything is made.
   */
  private requireRecordRoom(spec: ContainerSpec): void {
    const room = this.sandbox.recordRoom();
    const need = 2 * encode(spec).byteLength + CONTAINER_RECORD_OVERHEAD;
    if (room !== undefined && need > room) {
      throw resourceExhausted(
        `container ${spec.id} not created: sandbox ${this.id}'s record would pass the bus's message limit (max_payload) by about ${need - room} bytes; ` +
          'use fewer or smaller containers (their args, env and annotations), or a larger max_payload on the server',
      );
    }
  }

  private async runContainer(cid: string, event: ContainerEvent, verb: string): Promise<Bus.ContainerStatus> {
    const ref = this.container(cid);
    this.requireContainer(ref, event, verb);
    ref.send(event);
    const after = await settled(ref);
    await this.sandbox.flush();
    const err = errorFrom(after.context.lastError);
    if (err) throw err;
    return this.sandbox.containerStatus(ref);
  }

  startContainer(cid: string, limits: CommandLimits = {}) {
    return this.runContainer(cid, { type: 'START', deadline: limits.deadline }, 'start');
  }

  stopContainer(cid: string, limits: CommandLimits = {}) {
    return this.runContainer(cid, { type: 'STOP', deadline: limits.deadline }, 'stop');
  }

  pauseContainer(cid: string, limits: CommandLimits = {}) {
    return this.runContainer(cid, { type: 'PAUSE', deadline: limits.deadline }, 'pause');
  }

  resumeContainer(cid: string, limits: CommandLimits = {}) {
    return this.runContainer(cid, { type: 'RESUME', deadline: limits.deadline }, 'resume');
  }

  async deleteContainer(cid: string, force: boolean, limits: CommandLimits = {}): Promise<void> {
    const ref = this.container(cid);
    const snap = ref.getSnapshot();
    if (force && String(snap.value) !== 'stopped' && snap.can({ type: 'STOP' })) await this.stopContainer(cid, limits);
    await this.runContainer(cid, { type: 'DELETE', deadline: limits.deadline }, 'delete');
  }

  async killContainer(cid: string, signal: number, all: boolean, limits: CommandLimits = {}): Promise<void> {
    if (!Number.isInteger(signal) || signal < 1 || signal > 64) throw invalidArgument(`signal ${signal} is not a signal number (1 to 64)`);
    const ref = this.container(cid);
    const event = { type: 'KILL' as const, opId: this.opId('kill'), signal, all, deadline: limits.deadline };
    this.requireContainer(ref, event, 'kill');
    await this.operation(ref, event);
  }

  async exec(cid: string, request: Bus.ContainerExecRequest, limits: CommandLimits = {}): Promise<ExecResult> {
    const ref = this.container(cid);
    const process = execProcess(request);
    const execId = request.execId ? checkId('exec', request.execId) : `exec-${randomBytes(4).toString('hex')}`;
    const ctx = ref.getSnapshot().context;
    if (execId === cid || ctx.execIds.includes(execId) || execId in ctx.execExits) throw alreadyExists(`exec ${execId} already exists in container ${cid}`);
    const event = { type: 'EXEC' as const, execId, process, deadline: limits.deadline };
    this.requireContainer(ref, event, 'exec in');
    ref.send(event);
    const proc = ref.getSnapshot().children[execId] as AnyActorRef | undefined;
    if (!proc) throw new VcError(ErrorCode.Internal, `exec ${execId} was not added`);
    const after = (await waitFor(proc, (s: { value: unknown; status: string }) => s.value !== 'starting' || s.status === 'stopped').catch((err: unknown) => {
      throw proc.getSnapshot().status === 'stopped' ? stoppedError() : err;
    })) as {
      value: unknown;
      status: string;
      context: { pid: number; pidUnknown?: boolean; lastError?: { code: string; message: string } };
    };
    if (after.status === 'stopped') throw stoppedError();
    await this.sandbox.flush();
    if (after.value === 'failed') throw errorFrom(after.context.lastError) ?? new VcError(ErrorCode.Internal, `exec ${execId} did not start`);
    return { execId, pid: after.context.pid, ...(after.context.pidUnknown ? { pidUnknown: true } : {}) };
  }

  async processList(cid: string, request: Bus.ContainerPsRequest, limits: CommandLimits = {}): Promise<{ format: string; output: string }> {
    const asked = request.format || 'table';
    if (asked !== 'json' && asked !== 'table') throw invalidArgument(`invalid format option ${JSON.stringify(asked)}: use json or table`);
    const format: 'json' | 'table' = asked;
    const ref = this.container(cid);
    const args = request.args?.length ? request.args : defaultPsArgs;
    if (args.some(hasNul)) throw invalidArgument('ps arguments may not contain NUL');
    const event = { type: 'PS' as const, opId: this.opId('ps'), format, args, deadline: limits.deadline };
    this.requireContainer(ref, event, 'list processes of');
    const output = await this.operation<string>(ref, event);
    return { format, output };
  }

  async stats(cid: string, limits: CommandLimits = {}): Promise<ContainerStats> {
    const ref = this.container(cid);
    const event = { type: 'STATS' as const, opId: this.opId('stats'), deadline: limits.deadline };
    this.requireContainer(ref, event, 'get stats of');
    return this.operation<ContainerStats>(ref, event);
  }

  /** Waits for the init process (or an exec) to exit; resolves at once if it already has. */
  async wait(cid: string, request: Bus.ContainerWaitRequest, limits: CommandLimits = {}): Promise<ExitInfo> {
    const ref = this.container(cid);
    this.requireContainer(ref, { type: 'WAIT' }, 'wait for');
    const timeoutMs = limits.deadline === undefined ? undefined : limits.deadline - Date.now();
    const bounded = <T>(what: string, until: (signal: AbortSignal) => Promise<T>) =>
      withinDeadline({ what, timeoutMs, signal: limits.signal, expired: () => deadlineExceeded(`no exit of ${what} within ${Math.round(timeoutMs ?? 0)} ms`) }, until);
    const execId = request.execId;
    if (execId && execId !== cid) {
      const exitOf = () => ref.getSnapshot().context.execExits[execId];
      const known = exitOf();
      if (known) return withReason(exitInfo(known.status, known.unknown, known.at), known);
      if (!ref.getSnapshot().context.execIds.includes(execId)) throw notFound(`exec ${execId} does not exist in container ${cid}`);
      await bounded(`exec ${execId}`, (signal) =>
        waitFor(ref, (s) => execId in s.context.execExits || !s.context.execIds.includes(execId), { signal, timeout: Infinity }),
      ).catch((err: unknown) => {
        throw ref.getSnapshot().status === 'done' ? notFound(`container ${cid} was deleted before exec ${execId} exited`) : err;
      });
      const exit = exitOf();
      if (!exit) throw notFound(`exec ${execId} in container ${cid} never started`);
      return withReason(exitInfo(exit.status, exit.unknown, exit.at), exit);
    }
    const done = await bounded(`container ${cid}`, (signal) =>
      waitFor(ref, (s) => s.context.exitStatus !== undefined && !s.hasTag('busy') && s.value !== 'running', { signal, timeout: Infinity }),
    ).catch((err: unknown) => {
      if (ref.getSnapshot().status === 'done') throw notFound(`container ${cid} was deleted before it exited`);
      throw err;
    });
    return withReason(exitInfo(done.context.exitStatus, done.context.exitUnknown, done.context.exitedAt), { reason: done.context.exitReason, message: done.context.exitMessage });
  }

  /** Writes to the stdin of the init process (or an exec) while it runs; `close` ends it. */
  async stdin(cid: string, request: Bus.ContainerStdinRequest, limits: CommandLimits = {}): Promise<void> {
    const ref = this.container(cid);
    if (this.state !== 'running') throw failedPrecondition(`cannot write to a process of container ${cid}: sandbox ${this.id} is ${this.state} (needs running)`, this.state, 'sandbox');
    const snap = ref.getSnapshot();
    const execId = request.execId && request.execId !== cid ? request.execId : '';
    if (execId) {
      if (!snap.context.execIds.includes(execId)) throw notFound(`exec ${execId} is not running in container ${cid}`);
    } else if (snap.value !== 'running' && snap.value !== 'paused') {
      throw failedPrecondition(`cannot write to the stdin of container ${cid} while it is ${String(snap.value)}`, String(snap.value), 'container');
    }
    const driver = this.sandbox.agent.driver;
    if (!driver.writeProcessStdin || !driver.closeProcessStdin) throw unimplemented(`the ${driver.type} agent has no process stdin`);
    const bounded = (what: string, call: (signal: AbortSignal) => Promise<unknown>) =>
      withinDeadline({ what, timeoutMs: limits.deadline === undefined ? undefined : limits.deadline - Date.now(), signal: limits.signal, expired: () => deadlineExceeded(`${what} took too long`) }, call);
    const data = Buffer.from(request.data ?? '', 'base64');
    if (data.length) await bounded(`stdin of ${execId || cid}`, (signal) => driver.writeProcessStdin!(cid, execId || cid, data, signal));
    if (request.close) await bounded(`closing the stdin of ${execId || cid}`, (signal) => driver.closeProcessStdin!(cid, execId || cid, signal));
  }

  /** Resizes the terminal of the init process (or an exec); one without a terminal is refused. */
  async resize(cid: string, request: Bus.ContainerResizeRequest, limits: CommandLimits = {}): Promise<void> {
    const { rows, cols } = checkConsoleSize(request.rows, request.cols, 'resize');
    const ref = this.container(cid);
    const snap = ref.getSnapshot();
    const execId = request.execId && request.execId !== cid ? request.execId : '';
    let terminal = snap.context.spec.terminal;
    if (execId) {
      const proc = snap.children[execId] as AnyActorRef | undefined;
      if (!snap.context.execIds.includes(execId) || !proc) throw notFound(`exec ${execId} is not running in container ${cid}`);
      terminal = (proc.getSnapshot() as { context: { process: ProcessSpec } }).context.process.terminal;
    }
    const event = { type: 'RESIZE' as const, opId: this.opId('resize'), execId: execId || cid, rows, cols, deadline: limits.deadline };
    this.requireContainer(ref, event, 'resize a terminal of');
    if (!terminal) throw failedPrecondition(`${execId ? `exec ${execId}` : `container ${cid}`} was started without a terminal: there is none to resize`);
    await this.operation(ref, event);
  }

  /** What the init process (or an exec) wrote, stdout and stderr kept apart. */
  async logs(cid: string, request: Bus.ContainerLogsRequest): Promise<Bus.LogsReply> {
    const ref = this.container(cid);
    this.requireContainer(ref, { type: 'LOGS' }, 'read the logs of');
    const following = request.stdoutOffset !== undefined || request.stderrOffset !== undefined;
    if (following && request.tailBytes) throw invalidArgument('tailBytes and stdoutOffset/stderrOffset exclude each other: ask for the tail or for what follows an offset');
    const offsets = following ? { stdout: request.stdoutOffset ?? 0, stderr: request.stderrOffset ?? 0 } : undefined;
    return this.sandbox.output().read(ref.id, request.execId ?? '', request.tailBytes ?? 0, offsets);
  }

  containerStatus(cid: string): Bus.ContainerStatus {
    return this.sandbox.containerStatus(this.container(cid));
  }
}

/** The process of an exec request, checked as a container's is (and for NULs). */
export function execProcess(request: Bus.ContainerExecRequest): ProcessSpec {
  const args = request.args ?? [];
  if (!args.length) throw invalidArgument('exec needs args: the command to run');
  if (args.some(hasNul)) throw invalidArgument('exec args may not contain NUL');
  const cwd = request.cwd ?? '';
  const user = request.user ?? '';
  if (hasNul(cwd) || hasNul(user)) throw invalidArgument('exec cwd and user may not contain NUL');
  const terminal = request.terminal ?? false;
  const process: ProcessSpec = { args, env: checkEnv(request.env ?? [], 'env'), cwd, user, terminal };
  if (request.consoleSize) {
    if (!terminal) throw invalidArgument('exec consoleSize is the size of a terminal: set terminal too');
    process.consoleSize = checkConsoleSize(request.consoleSize.rows, request.consoleSize.cols, 'exec consoleSize');
  }
  return process;
}
