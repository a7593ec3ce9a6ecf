// Shared pieces of the backend suites: sandbox specs, temporary run directories, small
// guest scripts, and scans of /proc for anything a sandbox may have left behind.
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { SandboxSpec } from '../../machines/specs.js';
import type { GuestPlan } from '../../actors/agents/agent.js';
import type { Backend, GuestExit, Incarnation } from '../../actors/backends/backend.js';
import type { CgroupOwner } from '../../actors/backends/cgroups/index.js';
import { guestEnv } from '../../actors/guest-binaries.js';
import { sandboxCgroupName } from '../helpers/processes.js';

export const quietLog = pino({ level: 'silent' });
export const isRoot = process.getuid?.() === 0;

export function sandboxId(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export function spec(id: string, extra: Partial<SandboxSpec> = {}): SandboxSpec {
  return {
    id,
    agent: 'kata',
    agentConfig: {},
    backend: 'namespace',
    hostname: `${id}-host`,
    monitor: { intervalMs: 1000, deadlineMs: 1000, policy: 'keep' },
    annotations: {},
    containers: [],
    ...extra,
  };
}

/** The host name test backends boot under: one per test process, as two runtimes would differ. */
export const TEST_HOST = `test-${process.pid}`;

/** A fresh incarnation, as a new sandbox actor has. */
export function incarnation(): Incarnation {
  return { host: TEST_HOST, uid: randomBytes(6).toString('hex') };
}

/** Who owns the cgroup a backend makes for an incarnation of a sandbox. */
export function cgroupOwner(id: string, inc: Incarnation): CgroupOwner {
  return { host: inc.host, sandboxId: id, incarnation: inc.uid };
}

export function plan(command: string[]): GuestPlan {
  return { endpoint: {}, command, env: guestEnv() };
}

/** A temporary directory removed by the returned function. */
export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `va-${prefix}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export async function writeScript(dir: string, name: string, body: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `#!/bin/sh\n${body}\n`);
  await chmod(path, 0o755);
  return path;
}

/** Polls until fn returns a value other than undefined; a wait, not a timing assertion. */
export async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, what: string, limitMs = 10_000): Promise<T> {
  for (let waited = 0; ; waited += 5) {
    const value = await fn();
    if (value !== undefined) return value;
    if (waited > limitMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

export async function readIfExists(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').catch(() => undefined);
}

/** Resolves with the first exit a backend reports. */
export function nextExit(backend: Backend): { exits: GuestExit[]; first: Promise<GuestExit> } {
  const exits: GuestExit[] = [];
  const first = new Promise<GuestExit>((resolve) =>
    backend.onExit((exit) => {
      exits.push(exit);
      resolve(exit);
    }),
  );
  return { exits, first };
}

export { alive, sandboxCgroupPattern, sandboxProcesses } from '../helpers/processes.js';

/** The host mount table as seen by this process. */
export async function hostMounts(): Promise<string> {
  return readFile('/proc/self/mountinfo', 'utf8');
}

/** Every cgroup directory of the sandbox (any host, any incarnation), in any hierarchy. */
export async function sandboxCgroupDirs(id: string): Promise<string[]> {
  const name = sandboxCgroupName(id);
  const out: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 6) return;
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const path = join(dir, e.name);
      if (name.test(e.name)) out.push(path);
      else await walk(path, depth + 1);
    }
  };
  await walk('/sys/fs/cgroup', 0);
  return out;
}
