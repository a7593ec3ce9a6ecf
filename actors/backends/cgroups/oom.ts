// OOM kills as the kernel counts them: cgroup v1 `memory.oom_control` (oom_kill, Linux
// 4.13+) and v2 `memory.events` (oom_kill). A v1 kill is counted in the victim's own
// cgroup only; v2 counts it up the tree too. So a container's kill is looked for in its
// own cgroup (the guest makes one per container, named after it, inside the sandbox's)
// before the sandbox's, and the limit that fired is the lowest on the way up.
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export interface OomCounter {
  /** The cgroup directory. */
  dir: string;
  oomKills: number;
  /** Its memory limit; undefined when unlimited. */
  limitBytes?: number;
}

/** Limits at or above this mean "no limit" (v1 reports the page-rounded maximum). */
const UNLIMITED = 2 ** 62;

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** One cgroup's counter, or undefined where the kernel has none (gone, or too old). */
export function oomCounter(dir: string, version: 1 | 2): OomCounter | undefined {
  const events = read(join(dir, version === 1 ? 'memory.oom_control' : 'memory.events'));
  const m = events?.match(/^oom_kill (\d+)$/m);
  if (!m) return undefined;
  const raw = read(join(dir, version === 1 ? 'memory.limit_in_bytes' : 'memory.max'))?.trim();
  const limit = raw && /^\d+$/.test(raw) ? Number(raw) : undefined;
  return { dir, oomKills: Number(m[1]), ...(limit !== undefined && limit < UNLIMITED ? { limitBytes: limit } : {}) };
}

/** A cgroup's memory use in bytes (v1 memory.usage_in_bytes, v2 memory.current). */
export function memoryUsage(dir: string, version: 1 | 2): number | undefined {
  const raw = read(join(dir, version === 1 ? 'memory.usage_in_bytes' : 'memory.current'))?.trim();
  return raw && /^\d+$/.test(raw) ? Number(raw) : undefined;
}

/** Directories named `name` below `root`, shallowest first (a few levels down at most). */
function named(root: string, name: string, depth = 3): string[] {
  const found: string[] = [];
  let level = [root];
  for (let d = 0; d < depth && level.length; d++) {
    const next: string[] = [];
    for (const dir of level) {
      let entries;
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const e of entries) if (e.isDirectory()) next.push(join(dir, e.name));
    }
    found.push(...next.filter((dir) => basename(dir) === name));
    level = next;
  }
  return found;
}

/** The lowest limit on the way from `root` down to `dir` (both included): the one that can fire. */
function effectiveLimit(root: string, dir: string, version: 1 | 2): number | undefined {
  let limit: number | undefined;
  for (let d = dir; ; d = dirname(d)) {
    const own = oomCounter(d, version)?.limitBytes;
    if (own !== undefined && (limit === undefined || own < limit)) limit = own;
    if (d === root || dirname(d) === d) return limit;
  }
}

/**
 * The container's own memory cgroups (below the sandbox's), then the sandbox's. The kernel
 * counts a kill in the victim's cgroup, whose own limit may be none: each counter carries
 * the lowest limit between it and the sandbox's cgroup.
 */
export function oomCounters(sandboxMemoryDir: string, version: 1 | 2, containerId: string): OomCounter[] {
  return [...named(sandboxMemoryDir, containerId), sandboxMemoryDir].flatMap((d) => {
    const c = oomCounter(d, version);
    if (!c) return [];
    const limit = effectiveLimit(sandboxMemoryDir, d, version);
    const { limitBytes: _own, ...counter } = c;
    return [limit === undefined ? counter : { ...counter, limitBytes: limit }];
  });
}

/**
 * Remembers the counters it saw and says which moved: the kill that a process's exit
 * with SIGKILL owes to the OOM killer, with the limit that fired.
 */
export class OomWatch {
  private readonly seen = new Map<string, number>();

  constructor(private readonly counters: (containerId: string) => OomCounter[] = () => []) {}

  /** Takes the current counts as the baseline (a container that starts). */
  baseline(containerId: string): void {
    for (const c of this.counters(containerId)) this.seen.set(c.dir, c.oomKills);
  }

  /** The first counter (container before sandbox) that moved since last seen, if any. */
  moved(containerId: string): OomCounter | undefined {
    return this.movedIn(this.counters(containerId));
  }

  /**
   * The same judgement over counters read elsewhere (a guest's, through its agent). A
   * counter below the one last seen belongs to a new cgroup of the same name (a container
   * id used again): it counts from 0.
   */
  movedIn(counters: readonly OomCounter[]): OomCounter | undefined {
    let hit: OomCounter | undefined;
    for (const c of counters) {
      const last = this.seen.get(c.dir) ?? 0;
      const before = c.oomKills < last ? 0 : last;
      this.seen.set(c.dir, c.oomKills);
      if (!hit && c.oomKills > before) hit = c;
    }
    return hit;
  }
}
