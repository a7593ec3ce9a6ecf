// How long guest calls may take, and how they end early. Every agent operation runs
// under an AbortSignal: it aborts when the command's deadline passes, when the actor
// that invoked the call stops (the sandbox left the state, or the host is stopping), or
// when the method's default time limit below runs out. The two helpers here are the only
// timeout races in the drivers and the actors.
import { deadlineExceeded, toVcError, unavailable, VcError } from '../../bus/errors.js';

/** The agent operations that talk to a guest, by name (see Agent in agent.ts). */
export type AgentOperation =
  | 'init'
  | 'check'
  | 'disconnect'
  | 'createSandbox'
  | 'startSandbox'
  | 'stopSandbox'
  | 'createContainer'
  | 'startContainer'
  | 'stopContainer'
  | 'killContainer'
  | 'processListContainer'
  | 'onlineCPUMem'
  | 'exec'
  | 'waitProcess'
  | 'signalProcess'
  | 'pauseContainer'
  | 'resumeContainer'
  | 'releaseContainer'
  | 'statsContainer'
  | 'winsizeProcess'
  | 'reconcile';

/**
 * Default time limit of each operation, in milliseconds; `undefined` waits until the
 * call is cancelled (a wait for a process is bounded by its command, not by a default).
 * A command's own deadline, when shorter, wins.
 */
export const AGENT_CALL_TIMEOUTS_MS: Readonly<Record<AgentOperation, number | undefined>> = {
  init: 5_000,
  // The monitor's deadline bounds every check.
  check: undefined,
  disconnect: 5_000,
  createSandbox: 10_000,
  startSandbox: 30_000,
  stopSandbox: 30_000,
  createContainer: 30_000,
  startContainer: 30_000,
  // SIGTERM, the grace period, SIGKILL, and the removal.
  stopContainer: 45_000,
  killContainer: 10_000,
  processListContainer: 10_000,
  onlineCPUMem: 30_000,
  exec: 30_000,
  waitProcess: undefined,
  signalProcess: 10_000,
  pauseContainer: 10_000,
  resumeContainer: 10_000,
  releaseContainer: 30_000,
  statsContainer: 10_000,
  winsizeProcess: 10_000,
  // Reattach: dialling the guest again (hyperstart waits for its READY).
  reconcile: 10_000,
};

/** A signal that never aborts, for calls nobody can cancel (tools, tests). */
export const NEVER: AbortSignal = new AbortController().signal;

/** Why an aborted signal aborted, as a VcError (a host that stops answers Unavailable). */
export function abortReason(signal: AbortSignal, what: string): VcError {
  const reason: unknown = signal.reason;
  if (reason instanceof VcError) return reason;
  if (reason instanceof Error && reason.name === 'TimeoutError') return deadlineExceeded(`${what}: the deadline passed`);
  if (reason instanceof Error && reason.name !== 'AbortError') return toVcError(reason);
  return unavailable(`${what} was cancelled`);
}

/** Fails at once when the signal has already aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortReason(signal, what);
}

export interface Deadline {
  /** What runs, for messages ("StartContainer", "waiting for READY" ...). */
  what: string;
  /** Its own time limit in ms; undefined or Infinity: none. */
  timeoutMs?: number;
  /** The caller's signal: the command's deadline, the invoking actor's life. */
  signal?: AbortSignal;
  /** The error when the time limit passes (default: DeadlineExceeded naming `what`). */
  expired?: () => VcError;
}

/**
 * Runs `work` until it settles, the caller's signal aborts, or the time limit passes.
 * Either way the work's own signal aborts, and the promise rejects at once, even if the
 * work ignores its signal.
 */
export function withinDeadline<T>(deadline: Deadline, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const { what, timeoutMs, signal: parent } = deadline;
  if (parent?.aborted) return Promise.reject(abortReason(parent, what));
  const controller = new AbortController();
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const end = (reason: VcError) => {
      controller.abort(reason);
      reject(reason);
    };
    const onParentAbort = () => end(abortReason(parent!, what));
    const cleanup = () => {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onParentAbort);
    };
    if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
      const ms = Math.max(0, timeoutMs);
      const expired = deadline.expired ?? (() => deadlineExceeded(`${what} did not finish within ${Math.round(ms)} ms`));
      timer = setTimeout(() => end(expired()), ms);
    }
    parent?.addEventListener('abort', onParentAbort, { once: true });
    let started: Promise<T>;
    try {
      started = work(controller.signal);
    } catch (err) {
      cleanup();
      reject(err);
      return;
    }
    started.then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (err: unknown) => {
        cleanup();
        // Once the deadline or the caller ended it, the work's own error is an echo.
        reject(controller.signal.aborted ? controller.signal.reason : err);
      },
    );
  });
}

/**
 * The value of `promise`, or undefined once `ms` passed (Infinity: no limit); rejects
 * when `signal` aborts.
 */
export function waitAtMost<T>(promise: Promise<T>, ms: number, signal?: AbortSignal, what = 'wait'): Promise<T | undefined> {
  return withinDeadline({ what, signal }, () => {
    if (!Number.isFinite(ms)) return promise;
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      promise,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
      }),
    ]).finally(() => clearTimeout(timer));
  });
}

export interface GracefulStop<T> {
  /** What is being stopped, for messages. */
  what: string;
  /** Asks politely (SIGTERM). */
  terminate(): Promise<void>;
  /** Insists (SIGKILL). */
  kill(): Promise<void>;
  /** Settles with what the end looked like (an exit status). */
  exited: Promise<T>;
  graceMs: number;
  /** How long to wait after `kill` before giving up. */
  killWaitMs: number;
  signal?: AbortSignal;
}

/** Terminate, wait up to the grace period, kill, wait again: the end, or DeadlineExceeded. */
export async function stopWithGrace<T>(stop: GracefulStop<T>): Promise<T> {
  await stop.terminate();
  const soft = await waitAtMost(stop.exited, stop.graceMs, stop.signal, `stopping ${stop.what}`);
  if (soft !== undefined) return soft;
  await stop.kill();
  const hard = await waitAtMost(stop.exited, stop.killWaitMs, stop.signal, `stopping ${stop.what}`);
  if (hard !== undefined) return hard;
  throw deadlineExceeded(`${stop.what} did not exit within ${stop.killWaitMs} ms of SIGKILL`);
}
