// Process listing for hyperstart, which has no ps command in its upstream dialect (the
// cc-agent PSCONTAINER sits on the code upstream uses for PROCESSASYNCEVENT). The driver
// runs ps inside the container as an exec and keeps only the container's processes.
//
// Which processes are the container's: our guest starts every process (init and each
// exec) as the leader of a new session, so the container's processes are exactly those
// whose session id is one of those leaders' pids, children included.

/** ps arguments listing the pids of the given sessions, one per line, no header. */
export const sessionPidArgs = (sessions: number[]): string[] => ['ps', '-o', 'pid=', '-s', sessions.join(',')];

export function parsePidList(text: string): number[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => Number(l))
    .filter((n) => Number.isInteger(n) && n > 0)
    .sort((a, b) => a - b);
}

/**
 * Keeps the header and the rows of a ps table whose PID column is in `pids`. Throws when
 * the table has no PID column (a custom -o format without pid), as runc's ps does.
 */
export function filterPsTable(text: string, pids: ReadonlySet<number>): string {
  const lines = text.split('\n');
  const header = lines[0] ?? '';
  const column = header.trim().split(/\s+/).indexOf('PID');
  if (column < 0) throw new Error('the ps output has no PID column; include pid in the ps format');
  const rows = lines.slice(1).filter((line) => {
    const pid = Number(line.trim().split(/\s+/)[column]);
    return pids.has(pid);
  });
  return [header, ...rows].join('\n') + '\n';
}
