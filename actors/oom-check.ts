// Whether a process that died of SIGKILL (a container's init or an exec) was killed by
// the kernel's OOM killer, and under which limit: the one judgement for every backend.
// Where the host sees the container's cgroups (the namespace backend) the backend reads
// their counters; where it cannot (inside a VM) the guest agent reports the counter of the
// container's cgroup in the guest (kata: StatsContainer's `virtactors.oom_kill` stat, see
// protos/kata/index.ts), and the same OomWatch decides whether it moved.
import { constants as osConstants } from 'node:os';
import { OOM_KILLED } from '../machines/lifecycle.js';
import type { ContainerStats, ExitInfo } from './agents/agent.js';
import type { Backend } from './backends/backend.js';
import { OomWatch, type OomCounter } from './backends/cgroups/oom.js';

export interface OomVerdict {
  reason: string;
  message: string;
}

const SIGKILLED = 128 + osConstants.signals.SIGKILL;

const mib = (bytes: number) => `${Math.round((bytes / 1024 ** 2) * 10) / 10} MiB`;

/** The words of an OOM kill under a counter's limit. */
export function oomVerdict(hit: { limitBytes?: number }): OomVerdict {
  const limit = hit.limitBytes === undefined ? 'its memory limit' : `the memory limit of ${hit.limitBytes} bytes (${mib(hit.limitBytes)})`;
  return { reason: OOM_KILLED, message: `killed by the kernel's OOM killer under ${limit}` };
}

export class OomCheck {
  /** The counters the guest reported, by container. */
  private readonly guest = new OomWatch();

  constructor(
    private readonly backend: Pick<Backend, 'oomKilled'>,
    /** The container's stats from its guest (undefined when the agent has none). */
    private readonly guestStats: (containerId: string) => Promise<ContainerStats> | undefined,
  ) {}

  /**
   * The verdict on an exit: at once where the host reads the counters (or the exit was no
   * SIGKILL), else a promise of what the guest's counter says (undefined when the guest
   * cannot tell: a stock agent, a guest gone).
   */
  judge(containerId: string, exit: ExitInfo): OomVerdict | undefined | Promise<OomVerdict | undefined> {
    if (exit.exitStatusUnknown || exit.exitStatus !== SIGKILLED) return undefined;
    if (this.backend.oomKilled) {
      const hit = this.backend.oomKilled(containerId);
      return hit ? oomVerdict(hit) : undefined;
    }
    const stats = this.guestStats(containerId);
    if (!stats) return undefined;
    return stats.then(
      (s) => {
        if (s.oomKills === undefined) return undefined;
        const counter: OomCounter = { dir: `guest:${containerId}`, oomKills: s.oomKills, ...(s.memoryLimitBytes > 0 ? { limitBytes: s.memoryLimitBytes } : {}) };
        const hit = this.guest.movedIn([counter]);
        return hit ? oomVerdict(hit) : undefined;
      },
      () => undefined,
    );
  }
}
