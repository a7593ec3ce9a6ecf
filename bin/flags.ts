// Parsers for the CLI's flag values: each says what is wrong with a value it refuses
// (commander prints it after the flag's name).
import { readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { InvalidArgumentError } from 'commander';

/** A whole number within bounds; `what` says what it is in the message ("a whole number of milliseconds"). */
export const whole = (what: string, min = 0, max = Number.MAX_SAFE_INTEGER) => (value: string): number => {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`takes ${what}, not ${JSON.stringify(value)}`);
  const n = Number(value);
  if (n < min || n > max) throw new InvalidArgumentError(`takes ${what} from ${min} to ${max}, not ${n}`);
  return n;
};

/** A size: bytes, or with a unit as docker takes them (k, m, g; Ki, Mi, Gi). */
export function size(value: string): number {
  const m = /^(\d+)([kmg]i?)?b?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`takes a size such as 32m, 512Mi or 1g, not ${JSON.stringify(value)}`);
  const unit = (m[2] ?? '').toLowerCase()[0];
  const n = Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1);
  if (n <= 0) throw new InvalidArgumentError('takes a size above 0');
  return n;
}

/** Repeatable flags: every occurrence kept, in order. */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** KEY=VALUE, for repeatable flags. */
export function keyValue(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`takes KEY=VALUE, not ${JSON.stringify(value)}`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** One of a list. */
export const oneOf = (choices: readonly string[]) => (value: string): string => {
  if (!choices.includes(value)) throw new InvalidArgumentError(`takes ${choices.join(', ')}, not ${JSON.stringify(value)}`);
  return value;
};

export function jsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw new InvalidArgumentError(`is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new InvalidArgumentError('takes a JSON object');
  return parsed as Record<string, unknown>;
}

/** A signal by name (TERM, SIGTERM) or number. */
export function signalNumber(value: string | undefined): number {
  if (value === undefined) return osConstants.signals.SIGTERM;
  if (/^\d+$/.test(value)) return Number(value);
  const upper = value.toUpperCase();
  const n = osConstants.signals[(upper.startsWith('SIG') ? upper : `SIG${upper}`) as keyof typeof osConstants.signals];
  if (n === undefined) throw new InvalidArgumentError(`unknown signal ${value}: use a name such as TERM, KILL, INT, or a number`);
  return n;
}

/** The CLI's own version: the package's. */
export function packageVersion(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      // not at this depth (dist/bin/ or bin/)
    }
  }
  return 'unknown';
}
