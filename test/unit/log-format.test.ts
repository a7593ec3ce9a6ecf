// Logs: pretty (pino-pretty) for a person at a terminal, JSON lines otherwise.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { logFormat } from '../../runtime/log.js';

const logOnce = (env: Record<string, string>) =>
  execFileSync(process.execPath, ['--import', 'tsx', '-e', "import('./runtime/log.ts').then(({ createLogger }) => createLogger('t').info({ sandboxId: 's1' }, 'hello'))"], {
    encoding: 'utf8',
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
  });

describe('log format', () => {
  it('is pretty at a terminal and JSON otherwise; LOG_FORMAT overrides it', () => {
    expect(logFormat({}, true)).toBe('pretty');
    expect(logFormat({}, false)).toBe('json');
    expect(logFormat({ LOG_FORMAT: 'json' }, true)).toBe('json');
    expect(() => logFormat({ LOG_FORMAT: 'xml' }, true)).toThrow(/LOG_FORMAT must be json or pretty/);
  });

  it('writes JSON lines to a pipe and pino-pretty lines when pretty', () => {
    const json = JSON.parse(logOnce({ LOG_FORMAT: '' }).trim());
    expect(json).toMatchObject({ level: 30, name: 't', sandboxId: 's1', msg: 'hello' });
    const pretty = logOnce({ LOG_FORMAT: 'pretty' });
    expect(pretty).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(t\): hello\n\s+sandboxId: "s1"\n$/);
  });
});
