// The one logger factory, through pino; LOG_LEVEL picks the level. A person at a terminal
// gets pino's own pretty transport (pino-pretty); anything else (a pipe, a file, a log
// collector) gets JSON lines. LOG_FORMAT=json or pretty overrides the choice.
import { pino, type Logger } from 'pino';

export type LogFormat = 'json' | 'pretty';

export function logFormat(env: NodeJS.ProcessEnv = process.env, isTTY = !!process.stdout.isTTY): LogFormat {
  const asked = env.LOG_FORMAT;
  if (asked === 'json' || asked === 'pretty') return asked;
  if (asked) throw new Error(`LOG_FORMAT must be json or pretty, not ${JSON.stringify(asked)}`);
  return isTTY ? 'pretty' : 'json';
}

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info', format = logFormat()): Logger {
  if (format === 'pretty') {
    return pino({ name, level, transport: { target: 'pino-pretty', options: { colorize: !!process.stdout.isTTY, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' } } });
  }
  return pino({ name, level, base: { pid: process.pid } });
}

export type { Logger };
