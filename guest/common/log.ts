// A tiny structured logger for guests: one JSON line per entry on stderr, which the
// sandbox backend keeps in the guest's log file. No dependency, nothing to load at start.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface GuestLog {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

function serializable(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = v instanceof Error ? { message: v.message, code: (v as { code?: unknown }).code } : v;
  return out;
}

export function guestLog(name: string, level: LogLevel = (process.env.LOG_LEVEL as LogLevel) || 'info'): GuestLog {
  const min = order[level] ?? order.info;
  const write = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (order[lvl] < min) return;
    const entry = { time: new Date().toISOString(), level: lvl, name, pid: process.pid, msg, ...(fields ? serializable(fields) : {}) };
    process.stderr.write(`${JSON.stringify(entry)}\n`);
  };
  return {
    debug: (msg, fields) => write('debug', msg, fields),
    info: (msg, fields) => write('info', msg, fields),
    warn: (msg, fields) => write('warn', msg, fields),
    error: (msg, fields) => write('error', msg, fields),
  };
}

/** A logger that drops everything (library default). */
export const silentLog: GuestLog = { debug() {}, info() {}, warn() {}, error() {} };
