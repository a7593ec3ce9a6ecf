// What the statecharts' invoked and spawned actors do for one sandbox: boot and tear
// down its guest, drive its containers, and every guest call, each within the limits
// it is given (the invoking actor's signal and the command's deadline).
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { waitFor } from 'xstate';
import { ErrorCode, isErrorCode, toVcError, unimplemented, VcError } from '../bus/errors.js';
import type { ContainerActorRef, ContainerEvent, ContainerStartOutput, ContainerStopOutput } from '../machines/container.js';
import type { ProcessStartOutput } from '../machines/process.js';
import type { ErrorSummary } from '../machines/lifecycle.js';
import type { CheckFailure } from '../machines/monitor.js';
import type { ContainerSpec, ProcessSpec, SandboxSpec } from '../machines/specs.js';
import type { CallLimits } from './agents/agent-actor.js';
import type { AgentActor } from './agents/agent-actor.js';
import type { AdoptedGuest, AgentListener, ContainerStats, GuestEndpoint } from './agents/agent.js';
import { decodeAgentConfig } from './agents/agent-type.js';
import type { Backend, Incarnation } from './backends/backend.js';
import type { OutputLog } from './output-log.js';
import { processState } from './processes.js';

export type Limits = CallLimits;

/** One sandbox's guest work, as the provided statechart actors call it. */
export interface SandboxOperations {
  /** Boots the guest for the first time (creating). */
  createSandbox(limits: Limits): Promise<void>;
  /** Boots a stopped sandbox's guest again (booting). */
  bootGuest(limits: Limits): Promise<void>;
  startContainers(limits: Limits): Promise<void>;
  pauseContainers(limits: Limits): Promise<void>;
  resumeContainers(limits: Limits): Promise<void>;
  stopSandbox(limits: Limits): Promise<void>;
  deleteSandbox(limits: Limits): Promise<void>;
  onlineCpuMem(cpus: number, limits: Limits): Promise<void>;
  /** One monitor check; rejects with a CheckFailure. */
  checkGuest(deadlineMs: number, signal?: AbortSignal): Promise<void>;
  createContainer(spec: ContainerSpec, limits: Limits): Promise<void>;
  startContainer(containerId: string, limits: Limits): Promise<ContainerStartOutput>;
  stopContainer(containerId: string, limits: Limits): Promise<ContainerStopOutput>;
  pauseContainer(containerId: string, limits: Limits): Promise<void>;
  resumeContainer(containerId: string, limits: Limits): Promise<void>;
  deleteContainer(containerId: string, limits: Limits): Promise<void>;
  killContainer(containerId: string, signal: number, all: boolean, limits: Limits): Promise<void>;
  startProcess(containerId: string, execId: string, process: ProcessSpec, limits: Limits): Promise<ProcessStartOutput>;
  resizeTerminal(containerId: string, execId: string, rows: number, cols: number, limits: Limits): Promise<void>;
  listProcesses(containerId: string, format: 'json' | 'table', args: string[], limits: Limits): Promise<string>;
  containerStats(containerId: string, limits: Limits): Promise<ContainerStats>;
}

/** The parts of a sandbox its operations work with. */
export interface SandboxParts {
  readonly spec: SandboxSpec;
  readonly agent: AgentActor;
  readonly backend: Backend;
  readonly runDir: string;
  /** Which run this is (host and incarnation): names what the backend makes on the host. */
  readonly incarnation: Incarnation;
  /** Whether the backend has reported the running guest's exit. */
  guestExitReported(): boolean;
  readonly log: Logger;
  /** What the agent reports on its own (exits, output, a lost connection). */
  readonly listener: AgentListener;
  output(): OutputLog;
  /** The live containers, in creation order. */
  containers(): ContainerActorRef[];
}

const now = () => new Date().toISOString();

export function errorFrom(summary: ErrorSummary | undefined, prefix = ''): VcError | undefined {
  if (!summary) return undefined;
  const code = isErrorCode(summary.code) ? summary.code : ErrorCode.Internal;
  return new VcError(code, prefix + summary.message);
}

/** Sends a container a command and waits until it settles (leaves its -ing state). */
export async function settleContainer(ref: ContainerActorRef, event: ContainerEvent) {
  ref.send(event);
  return waitFor(ref, (s) => !s.hasTag('busy'), { timeout: Infinity });
}

export class GuestOperations implements SandboxOperations {
  private endpoint: GuestEndpoint = {};

  constructor(private readonly parts: SandboxParts) {}

  private get agent(): AgentActor {
    return this.parts.agent;
  }

  /** Where the guest's agent listens (kept in the sandbox's record for a restarted host). */
  get guestEndpoint(): GuestEndpoint {
    return this.endpoint;
  }

  /** Reattach: the driver learns the guest an earlier runtime started, without talking to it. */
  async adoptGuest(guest: AdoptedGuest): Promise<void> {
    const { spec, runDir, log, listener } = this.parts;
    const driver = this.agent.driver;
    await driver.init({ sandbox: spec, config: decodeAgentConfig(spec.agent, spec.agentConfig), runDir, log, listener });
    this.endpoint = guest.endpoint;
    driver.locate?.(guest.endpoint);
    driver.adopt?.(guest);
  }

  /** Reattach, with the actor running: the driver catches up with the guest's exits. */
  async reconcileGuest(limits: Limits): Promise<void> {
    const driver = this.agent.driver;
    if (!driver.reconcile) return;
    await this.agent.call('reconcile', (a, abort) => a.reconcile!(abort), limits);
  }

  // ---- the sandbox -------------------------------------------------------------------

  createSandbox(limits: Limits): Promise<void> {
    return this.boot(true, limits);
  }

  bootGuest(limits: Limits): Promise<void> {
    return this.boot(false, limits);
  }

  /** Boots the guest and sets the sandbox up in it; on failure leaves nothing behind. */
  private async boot(first: boolean, limits: Limits): Promise<void> {
    const { spec, runDir, log, listener } = this.parts;
    try {
      const driver = this.agent.driver;
      if (first) {
        await driver.init({ sandbox: spec, config: decodeAgentConfig(spec.agent, spec.agentConfig), runDir, log, listener }, limits.signal);
      }
      const plan = (await driver.createSandbox(limits.signal)) ?? { endpoint: {}, command: [], env: {} };
      const started = performance.now();
      this.endpoint = await this.parts.backend.boot({ sandbox: spec, incarnation: this.parts.incarnation, runDir, plan });
      const booted = performance.now();
      driver.locate?.(this.endpoint);
      await this.agent.call('startSandbox', (a, abort) => a.startSandbox(this.endpoint, abort), limits);
      log.debug({ bootMs: Math.round(booted - started), setupMs: Math.round(performance.now() - booted) }, 'guest up: booted by the backend, set up by the agent');
    } catch (err) {
      await this.teardownGuest().catch(() => {});
      if (first) await this.cleanUpFailedCreate();
      throw toVcError(err);
    }
  }

  /**
   * A sandbox whose create failed does not exist (its id is free again): nothing of it may
   * stay, not even the run directory the runtime made for it (a full disk left one behind
   * with an empty log and a half-written pid file). A failed re-boot keeps it: the sandbox
   * is still there, stopped, with its log.
   */
  private async cleanUpFailedCreate(): Promise<void> {
    await this.releaseHostSide().catch((err: unknown) => this.parts.log.warn({ err }, 'clean-up after a failed create is incomplete'));
  }

  /** The host's side of a sandbox once its guest is gone: the agent, the output logs, the run directory. */
  private async releaseHostSide(): Promise<void> {
    await this.agent.release().catch(() => {});
    await this.parts.output().close(true);
    // The run directory is the runtime's own: created for this sandbox under its run root.
    rmSync(this.parts.runDir, { recursive: true, force: true });
  }

  startContainers(limits: Limits): Promise<void> {
    return this.forEachContainer({ type: 'START', deadline: limits.deadline }, (state) => state === 'ready' || state === 'stopped');
  }

  pauseContainers(limits: Limits): Promise<void> {
    return this.forEachContainer({ type: 'PAUSE', deadline: limits.deadline }, (state) => state === 'running');
  }

  resumeContainers(limits: Limits): Promise<void> {
    return this.forEachContainer({ type: 'RESUME', deadline: limits.deadline }, (state) => state === 'paused');
  }

  /** Drives every container in a given state through one command, in creation order. */
  private async forEachContainer(event: ContainerEvent, when: (state: string) => boolean): Promise<void> {
    for (const ref of this.parts.containers()) {
      if (!when(String(ref.getSnapshot().value))) continue;
      const after = await settleContainer(ref, event);
      const err = errorFrom(after.context.lastError, `container ${ref.id}: `);
      if (err) throw err;
    }
  }

  async stopSandbox(limits: Limits): Promise<void> {
    let firstError: VcError | undefined;
    for (const ref of this.parts.containers()) {
      if (String(ref.getSnapshot().value) === 'stopped') continue;
      const after = await settleContainer(ref, { type: 'STOP', deadline: limits.deadline });
      firstError ??= errorFrom(after.context.lastError, `container ${ref.id}: `);
    }
    if (!this.agent.isDead()) {
      await this.agent.call('stopSandbox', (a, abort) => a.stopSandbox(abort), limits).catch((err: unknown) => {
        firstError ??= toVcError(err);
      });
    }
    await this.teardownGuest();
    if (firstError) throw firstError;
  }

  async deleteSandbox(limits: Limits): Promise<void> {
    for (const ref of this.parts.containers()) {
      const snap = ref.getSnapshot();
      if (snap.can({ type: 'STOP' }) && String(snap.value) !== 'stopped') await settleContainer(ref, { type: 'STOP', deadline: limits.deadline });
      await settleContainer(ref, { type: 'DELETE', deadline: limits.deadline });
    }
    if (!this.agent.isDead() && this.parts.backend.pid !== undefined) {
      await this.agent.call('stopSandbox', (a, abort) => a.stopSandbox(abort), limits).catch((err: unknown) => this.parts.log.warn({ err }, 'stopSandbox during delete failed'));
    }
    await this.teardownGuest();
    await this.releaseHostSide();
  }

  private async teardownGuest(): Promise<void> {
    await this.agent.driver.disconnect().catch((err: unknown) => this.parts.log.warn({ err }, 'agent disconnect failed'));
    await this.parts.backend.shutdown();
  }

  async onlineCpuMem(cpus: number, limits: Limits): Promise<void> {
    await this.agent.call('onlineCPUMem', (a, abort) => a.onlineCPUMem(cpus, abort), limits);
  }

  async checkGuest(deadlineMs: number, signal?: AbortSignal): Promise<void> {
    if (this.agent.isDead()) await this.guestExitReported(deadlineMs);
    if (this.agent.isDead()) throw { reason: 'agent-unreachable', message: 'the agent is marked dead', at: now() } satisfies CheckFailure;
    try {
      await this.agent.call('check', (a, abort) => a.check(abort), { deadline: Date.now() + deadlineMs, signal });
    } catch (err) {
      const e = toVcError(err);
      if (e.code === ErrorCode.DeadlineExceeded) {
        throw { reason: 'check-timeout', message: `the agent did not answer a health check within ${deadlineMs} ms`, at: now() } satisfies CheckFailure;
      }
      await this.guestExitReported(deadlineMs);
      throw { reason: 'agent-unreachable', message: `health check failed: ${e.message}`, at: now() } satisfies CheckFailure;
    }
  }

  /**
   * A connection lost because the guest died is its exit, not an unreachable agent: while
   * the guest's first process is gone but its exit not yet reported (a pid namespace takes a
   * moment to end), wait for that report, within `ms`.
   */
  private async guestExitReported(ms: number): Promise<void> {
    const pid = this.parts.backend.pid;
    if (pid === undefined) return;
    // Exiting counts: the agent's connection closes before its namespace has ended.
    const gone = () => processState(pid) !== 'running';
    for (let waited = 0; gone() && !this.parts.guestExitReported() && waited < ms; waited += 10) await sleep(10);
  }

  // ---- containers -------------------------------------------------------------------

  async createContainer(spec: ContainerSpec, limits: Limits): Promise<void> {
    await this.agent.call('createContainer', (a, abort) => a.createContainer(spec, abort), limits);
  }

  async startContainer(containerId: string, limits: Limits): Promise<ContainerStartOutput> {
    const { pid, pidUnknown } = await this.agent.call('startContainer', (a, abort) => a.startContainer(containerId, abort), limits);
    return { pid, pidUnknown: !!pidUnknown, startedAt: now() };
  }

  async stopContainer(containerId: string, limits: Limits): Promise<ContainerStopOutput> {
    // A dead guest has nothing left to stop.
    if (this.agent.isDead()) return {};
    return (await this.agent.call('stopContainer', (a, abort) => a.stopContainer(containerId, abort), limits)) ?? {};
  }

  async pauseContainer(containerId: string, limits: Limits): Promise<void> {
    await this.agent.call('pauseContainer', (a, abort) => a.pauseContainer(containerId, abort), limits);
  }

  async resumeContainer(containerId: string, limits: Limits): Promise<void> {
    await this.agent.call('resumeContainer', (a, abort) => a.resumeContainer(containerId, abort), limits);
  }

  /** The guest forgets the container and the host unstages what it staged for it (its rootfs). */
  async deleteContainer(containerId: string, limits: Limits): Promise<void> {
    if (this.agent.isDead() || !this.agent.driver.releaseContainer) return;
    await this.agent.call('releaseContainer', (a, abort) => a.releaseContainer!(containerId, abort), limits);
  }

  async killContainer(containerId: string, signal: number, all: boolean, limits: Limits): Promise<void> {
    await this.agent.call('killContainer', (a, abort) => a.killContainer(containerId, signal, all, abort), limits);
  }

  async startProcess(containerId: string, execId: string, process: ProcessSpec, limits: Limits): Promise<ProcessStartOutput> {
    const { pid, pidUnknown } = await this.agent.call('exec', (a, abort) => a.exec(containerId, process, execId, abort), limits);
    return pidUnknown ? { pid, pidUnknown } : { pid };
  }

  async resizeTerminal(containerId: string, execId: string, rows: number, cols: number, limits: Limits): Promise<void> {
    await this.agent.call(
      'winsizeProcess',
      (a, abort) => {
        if (!a.winsizeProcess) throw unimplemented(`the ${a.type} agent cannot resize a terminal`);
        return a.winsizeProcess(containerId, execId, rows, cols, abort);
      },
      limits,
    );
  }

  async listProcesses(containerId: string, format: 'json' | 'table', args: string[], limits: Limits): Promise<string> {
    const out = await this.agent.call('processListContainer', (a, abort) => a.processListContainer(containerId, { format, args }, abort), limits);
    const output = Buffer.from(out).toString('utf8');
    return format === 'json' && output === '' ? '[]' : output;
  }

  async containerStats(containerId: string, limits: Limits): Promise<ContainerStats> {
    return this.agent.call(
      'statsContainer',
      (a, abort) => {
        if (!a.statsContainer) throw unimplemented(`the ${a.type} agent reports no container stats: its guest has no command for them`);
        return a.statsContainer(containerId, abort);
      },
      limits,
    );
  }
}

