// What the CLI prints: tables, event lines and human units. No bus access here.
import type * as Bus from '../bus/messages.gen.js';

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** Bytes in binary units, as `docker stats` and `free -h` print them. */
export function bytes(n: number | undefined): string {
  const v = n ?? 0;
  if (v < 1024) return `${v} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let x = v;
  let u = -1;
  while (x >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return `${x >= 100 ? Math.round(x) : x.toFixed(1)} ${units[u]}`;
}

/** A limit where 0 means none was set. */
export const limit = (n: number | undefined, unit: (v: number) => string = String) => (n ? unit(n) : 'unlimited');

/** A pid as far as it is known: `-` when nothing runs, `unknown` when the agent could not say. */
export function pidText(pid: number | undefined, unknown: boolean | undefined): string {
  if (unknown) return 'unknown';
  return pid ? String(pid) : '-';
}

export function exitText(c: { hasExitStatus?: boolean; exitStatus?: number; exitStatusUnknown?: boolean; exitReason?: string }): string {
  if (!c.hasExitStatus) return '-';
  if (c.exitStatusUnknown) return 'unknown';
  return c.exitReason ? `${c.exitStatus} (${c.exitReason})` : String(c.exitStatus);
}

export function sandboxRows(list: Bus.SandboxStatus[]): string {
  return table([
    ['ID', 'STATE', 'AGENT', 'BACKEND', 'HOST', 'CONTAINERS', 'CREATED'],
    ...list.map((s) => [
      s.id ?? '', s.state === 'lost' ? `lost since ${s.lostSince}` : (s.state ?? ''), s.agent ?? '', s.backend ?? '', s.host ?? '',
      String(s.containers?.length ?? 0), s.createdAt ?? '',
    ]),
  ]);
}

export function containerRows(list: Bus.ContainerStatus[]): string {
  return table([
    ['ID', 'STATE', 'PID', 'EXIT', 'COMMAND'],
    ...list.map((c) => [c.id ?? '', c.state ?? '', pidText(c.pid, c.pidUnknown), exitText(c), (c.spec?.args ?? []).join(' ')]),
  ]);
}

export function describeSandbox(s: Bus.SandboxStatus): string {
  let out = sandboxRows([s]);
  if (s.state === 'failed') out += `\nfailed: ${s.failureReason} since ${s.failedAt}: ${s.failureMessage}`;
  if (s.state === 'lost') out += `\nlost: host ${s.host} is lost since ${s.lostSince} (\`sandbox forget ${s.id}\` drops the record)`;
  if (s.backend === 'namespace') out += `\nuser namespace: ${s.userNamespace ? 'on' : 'off'}`;
  if (s.containers?.length) out += `\n\n${containerRows(s.containers)}`;
  return out;
}

export function statsTable(st: Bus.ContainerStats): string {
  return table([
    ['CPU', 'MEMORY', 'MEMORY LIMIT', 'PIDS', 'PIDS LIMIT'],
    [`${((st.cpuUsageNs ?? 0) / 1e9).toFixed(2)} s`, bytes(st.memoryUsageBytes), limit(st.memoryLimitBytes, bytes), String(st.pidsCurrent ?? 0), limit(st.pidsLimit)],
  ]);
}

export function eventLine(e: Bus.Event): string {
  // Host events (lost, forget, reap) are not numbered and have no state.
  if (e.seq === undefined && e.state === undefined) return `${e.time} host ${e.host} ${e.type}${e.sandboxId ? ` sandbox ${e.sandboxId}` : ''}: ${e.message ?? ''}`;
  const who = e.containerId ? `container ${e.containerId}${e.execId ? ` exec ${e.execId}` : ''}` : 'sandbox';
  let line = `${e.time} ${e.sandboxId} #${e.seq} ${who} ${e.type} -> ${e.state}`;
  if (e.exitStatus !== undefined && (e.type === 'exit' || e.type === 'fail')) line += `, status ${e.exitStatusUnknown ? 'unknown' : e.exitStatus}`;
  if (e.pid) line += `, pid ${e.pid}`;
  else if (e.pidUnknown) line += ', pid unknown';
  if (e.reason) line += `, reason ${e.reason}`;
  if (e.message) line += `: ${e.message}`;
  return line;
}
