// The one logger factory: structured JSON through pino; LOG_LEVEL picks the level.
import { pino, type Logger } from 'pino';

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } });
}

export type { Logger };
