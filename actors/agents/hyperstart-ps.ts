// ps on a hyperstart guest without our PSCONTAINER (a stock hyperstart): a shell run as
// an exec in the container finds the container's processes, then runs ps for a table.
//
// All containers of a stock pod share the pod's pid namespace (reference §10): ps there
// shows the pod's init as pid 1 and every other container's processes, so its output
// cannot be taken as the container's. A process belongs to the container when it shares
// the exec's mount namespace (each hyperstart container has its own), pid namespace and
// cgroup (each of our guest's containers has its own); the exec's shell (which becomes
// the ps) is left out by its pid, not by its command line, which busybox rewrites
// (`ps -o pid=,args=` shows as `ps -o pid= args=`).
import { ErrorCode, VcError } from '../../bus/errors.js';
import type { ProcessListOptions } from './agent.js';

/**
 * $1 is the format, the rest are ps's arguments. Prints the member pids, a "--" line,
 * then ps's output (table only). /proc/self is the shell in its builtins (`cd`, `[`), and
 * each `cat` runs after the /proc listing was taken, so none of them is counted; a process
 * gone meanwhile makes its `cat` fail (on stderr, which only a failed listing shows).
 */
const SCRIPT = [
  'cd -P /proc/self || exit 125',
  'me=${PWD##*/}',
  'mine=$(cat /proc/self/cgroup)',
  'for d in /proc/[0-9]*; do',
  '  p=${d#/proc/}',
  '  [ "$p" = "$me" ] && continue',
  '  [ "$d/ns/mnt" -ef /proc/self/ns/mnt ] && [ "$d/ns/pid" -ef /proc/self/ns/pid ] || continue',
  '  c=$(cat "$d/cgroup") || continue',
  '  [ "$c" = "$mine" ] && echo "$p"',
  'done',
  'echo --',
  'cd /',
  '[ "$1" = json ] && exit 0',
  'shift',
  'exec ps "$@"',
].join('\n');

export const PS_MARKER = '--';

/** The exec's argv for a listing. */
export function psExecArgs(options: ProcessListOptions, defaultArgs: readonly string[]): string[] {
  const psargs = options.args.length ? options.args : [...defaultArgs];
  return ['sh', '-c', SCRIPT, 'vc-ps', options.format, ...(options.format === 'table' ? psargs : [])];
}

/** The exec's output as the listing: a JSON array of pids, or ps's header and the members' lines. */
export function psExecResult(output: string, format: ProcessListOptions['format']): Uint8Array {
  const lines = output.split('\n');
  const end = lines.indexOf(PS_MARKER);
  if (end < 0) throw new VcError(ErrorCode.Internal, 'the ps exec ended before listing the container processes');
  const pids = lines.slice(0, end).map(Number).filter((n) => Number.isInteger(n) && n > 0);
  if (format === 'json') return Buffer.from(JSON.stringify(pids));
  const table = lines.slice(end + 1).filter((l) => l.trim() !== '');
  const header = table[0] ?? '';
  const column = header.trim().split(/\s+/).indexOf('PID');
  if (column < 0) throw new VcError(ErrorCode.Internal, 'ps output has no PID column');
  const members = new Set(pids);
  const kept = [header, ...table.slice(1).filter((l) => members.has(Number(l.trim().split(/\s+/)[column])))];
  return Buffer.from(`${kept.join('\n')}\n`);
}
