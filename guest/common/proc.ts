// Reading processes from /proc. Sync reads: procfs answers from kernel memory, faster than
// a thread-pool round trip.
import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';

export interface ProcInfo {
  pid: number;
  ppid: number;
  /** One letter: R, S, D, Z, T, ... */
  state: string;
}

/** pid, state and ppid of one process; undefined when it is gone. */
export function procInfo(pid: number): ProcInfo | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { pid, state: rest[0] ?? '?', ppid: Number(rest[1]) };
}

/** Every process of the pid namespace /proc belongs to. */
export function allProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    const c = entry.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const info = procInfo(Number(entry));
    if (info) out.push(info);
  }
  return out;
}

/** Direct children of a process (all its threads' children). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    try {
      for (const p of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) if (p) out.push(Number(p));
    } catch {
      // thread gone
    }
  }
  return out;
}

/** The roots and everything below them, from one snapshot of the process table. */
export function withDescendants(roots: Iterable<number>, table: ProcInfo[] = allProcesses()): Set<number> {
  const kids = new Map<number, number[]>();
  for (const p of table) {
    const list = kids.get(p.ppid);
    if (list) list.push(p.pid);
    else kids.set(p.ppid, [p.pid]);
  }
  const out = new Set<number>();
  const stack = [...roots];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (out.has(pid)) continue;
    out.add(pid);
    for (const k of kids.get(pid) ?? []) stack.push(k);
  }
  return out;
}

/** Whether this /proc shows our own pid namespace (a foreign /proc would mislead every lookup). */
export function procIsOurs(): boolean {
  try {
    return readFileSync('/proc/self/stat', 'utf8').startsWith(`${process.pid} `);
  } catch {
    return false;
  }
}

/** Exit status as a shell reports it: the code, or 128 + the signal number. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
}

/** Sends a signal; false when the process is gone. */
export function sendSignal(pid: number, signal: number | NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}
