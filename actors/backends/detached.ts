// The part both guest backends share: a guest started detached (its own session, stdio
// to a log file, nothing tying it to the runtime), its exit reported once, and a shutdown
// that asks, waits a grace period, kills, waits, and removes what the guest left.
// Each boot is one run; a stopped sandbox that starts again boots a new run.
import type { ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import type { Logger } from 'pino';
import { failedPrecondition } from '../../bus/errors.js';
import type { BackendType } from '../../machines/specs.js';
import type { GuestEndpoint } from '../agents/agent.js';
import type { AdoptRequest, Backend, BootRequest, GuestExit } from './backend.js';
import { checkPlan, guestExit, isSandboxGuest, openGuestLog, readPidFile, removeGuestFiles, writePidFile } from './guest-files.js';
import { UNKNOWN_EXIT_STATUS } from '../../machines/lifecycle.js';
import { DEFAULT_MEMORY_RESERVE_MIB, GUEST_PROCESS_MIB, requireMemory } from './memory.js';

export interface GuestBackendOptions {
  log: Logger;
  /** How long the guest gets between SIGTERM and SIGKILL at shutdown. */
  graceMs?: number;
  /** Memory the host keeps for itself: no guest starts that would leave less (MiB). */
  memoryReserveMiB?: number;
}

const DEFAULT_GRACE_MS = 2000;
/** After SIGKILL a process only lingers in uninterruptible sleep; do not wait for ever. */
const KILL_WAIT_MS = 10_000;
/**
 * How often an adopted guest (not our child: no exit event) is looked for in /proc. Well
 * under the monitor's deadline, so that its death reads as guest-exited, not unreachable.
 */
const ADOPTED_POLL_MS = 100;

export interface GuestRun {
  readonly request: BootRequest;
  /** The process this runtime spawned (the guest, or the namespace backend's waiter). */
  child?: ChildProcess;
  /** Host pid of the guest's first process. */
  pid?: number;
  exit?: GuestExit;
  readonly exited: Promise<GuestExit>;
  /** Undone in reverse order once the guest is gone. */
  readonly teardown: (() => Promise<void> | void)[];
  resolveExit: (exit: GuestExit) => void;
  up: boolean;
  stopRequested: boolean;
  reported: boolean;
  /** The guest runs in a user namespace of its own. */
  userns?: boolean;
  /** Started by an earlier runtime: watched through /proc, not as a child. */
  adopted?: boolean;
  booting?: Promise<unknown>;
  stopped?: Promise<void>;
}

/** Resolves true when the promise settles within ms, false otherwise. */
function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export abstract class DetachedGuestBackend implements Backend {
  abstract readonly type: BackendType;
  protected readonly log: Logger;
  protected readonly graceMs: number;
  private readonly memoryReserveMiB: number;
  private readonly listeners: ((exit: GuestExit) => void)[] = [];
  private run: GuestRun | undefined;

  constructor(options: GuestBackendOptions) {
    this.log = options.log;
    this.graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
    this.memoryReserveMiB = options.memoryReserveMiB ?? DEFAULT_MEMORY_RESERVE_MIB;
  }

  /** Starts the guest (calling track() right after spawning); resolves with its host pid once it runs. */
  protected abstract launch(run: GuestRun, env: Record<string, string>, logFd: number): Promise<number>;
  /** Asks the guest to stop; false when it cannot hear the request (no point waiting). */
  protected abstract terminate(run: GuestRun): Promise<boolean> | boolean;
  /** Kills the guest and everything it started. */
  protected abstract kill(run: GuestRun): void;
  protected abstract environment(request: BootRequest): Record<string, string>;
  /** What stopping an adopted guest must undo besides killing it (its cgroup, its group). */
  protected abstract adoptedTeardown(run: GuestRun): Promise<void> | void;

  get pid(): number | undefined {
    return this.run && !this.run.stopRequested ? this.run.pid : undefined;
  }

  get userNamespace(): boolean {
    return !!this.run && !this.run.stopRequested && !!this.run.up && this.run.userns === true;
  }

  onExit(listener: (exit: GuestExit) => void): void {
    this.listeners.push(listener);
  }

  async boot(request: BootRequest): Promise<GuestEndpoint> {
    const previous = this.run;
    if (previous) {
      if (!previous.stopRequested && !previous.exit) throw failedPrecondition('the guest is already running');
      // A guest that exited on its own, or one still being stopped: finish its clean-up first.
      await this.shutdown();
    }
    checkPlan(request.plan);
    await requireMemory(GUEST_PROCESS_MIB, this.memoryReserveMiB, `the guest of sandbox ${request.sandbox.id}`);
    let resolveExit!: (exit: GuestExit) => void;
    const exited = new Promise<GuestExit>((r) => (resolveExit = r));
    const run: GuestRun = { request, exited, resolveExit, teardown: [], up: false, stopRequested: false, reported: false };
    this.run = run;
    const booting = this.start(run);
    run.booting = booting;
    return booting;
  }

  async adopt(request: AdoptRequest): Promise<boolean> {
    const { runDir, endpoint } = request;
    const recorded = request.pid ?? readPidFile(runDir);
    // A pid reused by another process since is not ours: never signalled, the guest is gone.
    const pid = recorded !== undefined && isSandboxGuest(recorded, request.sandbox.id) ? recorded : undefined;
    let resolveExit!: (exit: GuestExit) => void;
    const exited = new Promise<GuestExit>((r) => (resolveExit = r));
    const plan = { endpoint, command: [], env: {} };
    const run: GuestRun = { request: { sandbox: request.sandbox, incarnation: request.incarnation, runDir, plan }, exited, resolveExit, teardown: [], up: true, stopRequested: false, reported: false, adopted: true, pid };
    this.run = run;
    await this.adoptedTeardown(run);
    if (pid === undefined) {
      run.exit = { status: UNKNOWN_EXIT_STATUS, at: new Date().toISOString() };
      resolveExit(run.exit);
      return false;
    }
    const timer = setInterval(() => {
      if (isSandboxGuest(pid, request.sandbox.id)) return;
      clearInterval(timer);
      run.exit = { status: UNKNOWN_EXIT_STATUS, at: new Date().toISOString() };
      run.resolveExit(run.exit);
      this.report(run);
    }, ADOPTED_POLL_MS);
    timer.unref();
    run.teardown.push(() => clearInterval(timer));
    return true;
  }

  private async start(run: GuestRun): Promise<GuestEndpoint> {
    const { request } = run;
    const log = this.log.child({ sandboxId: request.sandbox.id, backend: this.type });
    let fd: number | undefined;
    try {
      fd = openGuestLog(request.runDir);
      run.pid = await this.launch(run, this.environment(request), fd);
      writePidFile(request.runDir, run.pid);
      run.up = true;
    } catch (err) {
      // A failed boot is reported by boot's rejection, never as a guest exit.
      run.stopRequested = true;
      await this.stopRun(run).catch((e) => log.error({ err: e }, 'clean-up after a failed boot failed'));
      throw err;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    log.debug({ pid: run.pid }, 'guest started');
    // An exit seen while booting is reported once the boot has resolved.
    if (run.exit) setImmediate(() => this.report(run));
    return request.plan.endpoint;
  }

  /** Follows the spawned process: its exit is the guest's exit. */
  protected track(run: GuestRun, child: ChildProcess): void {
    run.child = child;
    const exited = (exit: GuestExit) => {
      if (run.exit) return;
      run.exit = exit;
      run.resolveExit(exit);
      if (run.up) this.report(run);
    };
    child.once('exit', (code, sig) => exited(guestExit(code, sig)));
    // Not started at all (the executable vanished): there will be no 'exit'.
    child.once('error', () => {
      if (child.pid === undefined) exited(guestExit(127, null));
    });
    // The guest must not keep the runtime alive, nor die with it.
    child.unref();
  }

  private report(run: GuestRun): void {
    if (run.reported || run.stopRequested || !run.exit) return;
    run.reported = true;
    for (const listener of this.listeners) {
      try {
        listener(run.exit);
      } catch (err) {
        this.log.error({ err }, 'guest exit listener failed');
      }
    }
  }

  /** Idempotent; a boot in progress is let finish first, then undone. */
  async shutdown(): Promise<void> {
    const run = this.run;
    if (!run) return;
    run.stopRequested = true;
    await run.booting?.catch(() => {});
    await this.stopRun(run);
  }

  private stopRun(run: GuestRun): Promise<void> {
    run.stopRequested = true;
    run.stopped ??= (async () => {
      const running = () => !run.exit && (run.child !== undefined || !!run.adopted);
      if (running() && (await this.terminate(run))) await within(run.exited, this.graceMs);
      if (running()) {
        this.kill(run);
        if (!(await within(run.exited, KILL_WAIT_MS))) this.log.error({ pid: run.pid }, 'guest still there after SIGKILL');
      }
      for (const undo of run.teardown.reverse()) {
        try {
          await undo();
        } catch (err) {
          this.log.error({ err, sandboxId: run.request.sandbox.id }, 'guest clean-up step failed');
        }
      }
      await removeGuestFiles(run.request.runDir, run.request.plan.endpoint);
    })();
    return run.stopped;
  }
}
