// Reading a ps table (ListProcesses format "table" with `-o pid,ppid`) to find the
// process a guest just started when its reply carried no pid: the one new process whose
// parent is outside the container (its own children have their parent inside).

interface Row {
  pid: number;
  ppid: number;
}

function rows(table: string): Row[] {
  const lines = table.split('\n').filter((l) => l.trim() !== '');
  const header = (lines[0] ?? '').trim().split(/\s+/);
  const pidCol = header.indexOf('PID');
  const ppidCol = header.indexOf('PPID');
  if (pidCol < 0 || ppidCol < 0) return [];
  return lines.slice(1).map((l) => {
    const cols = l.trim().split(/\s+/);
    return { pid: Number(cols[pidCol]), ppid: Number(cols[ppidCol]) };
  }).filter((r) => Number.isInteger(r.pid) && Number.isInteger(r.ppid));
}

/** The single process not in `known` whose parent is not in the table; undefined when there is not exactly one. */
export function newProcessRoot(table: string, known: ReadonlySet<number>): number | undefined {
  const all = rows(table);
  const members = new Set(all.map((r) => r.pid));
  const roots = all.filter((r) => !known.has(r.pid) && !members.has(r.ppid));
  return roots.length === 1 ? roots[0]!.pid : undefined;
}
