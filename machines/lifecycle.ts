// Shared vocabulary of the lifecycle statecharts: the reference's four states and its
// transition table, OCI status strings, and the shape of emitted lifecycle notices.
// Pure data; no I/O.
import type { ContainerEventType, ExecEventType, SandboxEventType } from '../protos/event-types.js';

/** The four states of the 2018 runtime, shared by sandboxes and containers. */
export type StableState = 'ready' | 'running' | 'paused' | 'stopped';

/** validTransition() of the reference (§3.2): which stable state may move to which. */
export const TRANSITION_TABLE: Readonly<Record<StableState, readonly StableState[]>> = {
  ready: ['running', 'stopped'],
  running: ['paused', 'stopped'],
  paused: ['running', 'stopped'],
  stopped: ['running'],
};

export const validTransition = (from: StableState, to: StableState): boolean => TRANSITION_TABLE[from].includes(to);

/** OCI status string of a state (reference §7.1); "" for states OCI has no name for. */
export function ociState(state: string): string {
  switch (state) {
    case 'ready':
      return 'created';
    case 'running':
    case 'paused':
    case 'stopped':
      return state;
    case 'creating':
      return 'creating';
    default:
      return '';
  }
}

/** Why a sandbox failed. */
export type FailureReason = 'guest-exited' | 'agent-unreachable' | 'check-timeout' | 'start-failed';

export interface ErrorSummary {
  code: string;
  message: string;
}

/** What every notice carries: the state its actor is in after it. */
interface NoticeBase {
  state: string;
}

/** A started process's pid may be unknown (a stock agent says none): then it is 0. */
interface PidFields {
  pidUnknown?: boolean;
}

/** An exit's status; unknown (the guest died, a stock agent's 0) makes it UNKNOWN_EXIT_STATUS. */
export interface ExitFields {
  exitStatus: number;
  exitStatusUnknown?: boolean;
  exitedAt: string;
  /** What ended it, when the runtime knows more than the status ("OOMKilled"), and in words. */
  reason?: string;
  message?: string;
}

/** A sandbox's own notices; `fail` says why. */
export type SandboxNotice =
  | (NoticeBase & { type: Exclude<SandboxEventType, 'fail'>; containerId?: undefined; execId?: undefined })
  | (NoticeBase & { type: 'fail'; containerId?: undefined; execId?: undefined; reason: string; message: string; exitStatus?: number });

/** A container's notices (its init process); `start` has the pid, `exit` the status. */
export type ContainerNotice =
  | (NoticeBase & { type: Exclude<ContainerEventType, 'start' | 'exit' | 'oom'>; containerId: string; execId?: undefined })
  | (NoticeBase & { type: 'oom'; containerId: string; execId?: undefined; message: string })
  | (NoticeBase & { type: 'start'; containerId: string; execId?: undefined; pid: number } & PidFields)
  | (NoticeBase & { type: 'exit'; containerId: string; execId?: undefined; pid: number } & ExitFields);

/** An exec's notices, on its container (`oom` before the exit of one the OOM killer killed). */
export type ExecNotice =
  | (NoticeBase & { type: 'oom'; containerId: string; execId: string; message: string })
  | (NoticeBase & { type: Extract<ExecEventType, 'exec-added'>; containerId: string; execId: string })
  | (NoticeBase & { type: Extract<ExecEventType, 'exec-started'>; containerId: string; execId: string; pid: number } & PidFields)
  | (NoticeBase & { type: 'exit'; containerId: string; execId: string; pid: number } & ExitFields);

/** A lifecycle notice: what the event publisher turns into a bus event, keyed on its type. */
export type LifecycleNotice = SandboxNotice | ContainerNotice | ExecNotice;

/** A notice as a child sends it up, before its parent adds the ids it knows. */
export type ContainerNoticeDraft = ContainerNotice extends infer N ? (N extends ContainerNotice ? Omit<N, 'containerId'> : never) : never;
export type ExecNoticeDraft = ExecNotice extends infer N ? (N extends ExecNotice ? Omit<N, 'containerId'> : never) : never;

/** Reported exit status when the real one is unknown (containerd's, for a lost process). */
export const UNKNOWN_EXIT_STATUS = 255;

/** An exit as the statecharts carry it; `unknown` when nobody can tell the status. */
export interface ExitNews {
  status: number;
  at: string;
  unknown?: boolean;
  /** The kernel's OOM killer ended it: "OOMKilled", with the limit in the message. */
  reason?: string;
  message?: string;
}

/** The reason of an exit the OOM killer caused (Docker's and containerd's word). */
export const OOM_KILLED = 'OOMKilled';

/** The exit of a process lost with its guest. */
export const lostExit = (at: string): ExitNews => ({ status: UNKNOWN_EXIT_STATUS, at, unknown: true });

/** The exit fields of a notice: the status, and the unknown marker when it applies. */
export function exitFields(exitStatus: number | undefined, unknown: boolean | undefined, exitedAt: string | undefined): ExitFields {
  const lost = unknown || exitStatus === undefined;
  return { exitStatus: lost ? UNKNOWN_EXIT_STATUS : exitStatus, ...(lost ? { exitStatusUnknown: true } : {}), exitedAt: exitedAt ?? '' };
}

/** Turns whatever an invoked actor threw into a serialisable summary. */
export function summarizeError(err: unknown): ErrorSummary {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    const e = err as { code: string; message?: string };
    return { code: e.code, message: e.message ?? e.code };
  }
  return { code: 'Internal', message: err instanceof Error ? err.message : String(err) };
}
