// Figures of the guest backends alone (no bus, no agent): boot until the guest's first
// output, boot() itself, shutdown, and how fast a guest killed from outside is reported.
import { randomBytes } from 'node:crypto';
import { watch } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Backend } from '../actors/backends/backend.js';
import { NamespaceBackend } from '../actors/backends/namespace.js';
import { ProcessBackend } from '../actors/backends/process.js';
import { guestEnv } from '../actors/guest-binaries.js';
import type { SandboxSpec } from '../machines/specs.js';
import { summarize, type Latency } from './stats.js';

export interface BackendFigures {
  backend: 'namespace' | 'process';
  guest: 'sh' | 'node';
  /** boot() called → the guest's first line in its log. */
  bootToFirstOutput: Latency;
  /** boot() called → boot() resolved. */
  boot: Latency;
  /** shutdown() of a guest without a SIGTERM handler, cgroup removal included. */
  shutdown: Latency;
  /** SIGKILL sent to the guest → onExit called. */
  detectGuestKilled: Latency;
}

const log = pino({ level: 'silent' });
const ms = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e6;

function spec(id: string, backend: 'namespace' | 'process'): SandboxSpec {
  return {
    id,
    agent: 'kata',
    agentConfig: {},
    backend,
    hostname: id,
    monitor: { intervalMs: 1000, deadlineMs: 1000, policy: 'keep' },
    annotations: {},
    containers: [],
  };
}

/** Resolves when the file under dir named name has a complete first line. */
function firstLine(dir: string, name: string): { seen: Promise<void>; close: () => void } {
  let close = () => {};
  const seen = new Promise<void>((resolve) => {
    const check = () =>
      void readFile(join(dir, name), 'utf8').then(
        (text) => text.includes('\n') && resolve(),
        () => {},
      );
    const watcher = watch(dir, check);
    close = () => watcher.close();
    check();
  });
  return { seen, close };
}

export async function benchBackend(backend: 'namespace' | 'process', guest: 'sh' | 'node', samples: number): Promise<BackendFigures> {
  const root = await mkdtemp(join(tmpdir(), 'vc-bench-backend-'));
  const command = guest === 'sh' ? ['/bin/sh', '-c', 'echo up; exec sleep 1000'] : [process.execPath, '-e', 'console.log("up"); setInterval(() => {}, 1e6)'];
  const make = (): Backend => (backend === 'namespace' ? new NamespaceBackend({ log }) : new ProcessBackend({ log }));
  // Guests are unref'd so that they never hold a runtime open; this keeps the bench alive.
  const keepAlive = setInterval(() => {}, 60_000);
  const first: number[] = [];
  const boots: number[] = [];
  const shutdowns: number[] = [];
  const detects: number[] = [];
  try {
    for (let i = -3; i < samples; i++) {
      const id = `bench-${backend}-${guest}-${i + 3}`;
      const runDir = join(root, id);
      const b = make();
      let killedAt = 0n;
      const exited = new Promise<number>((resolve) => b.onExit(() => resolve(ms(killedAt))));
      await rm(runDir, { recursive: true, force: true });
      await mkdir(runDir, { recursive: true });
      const output = firstLine(runDir, 'guest.log');
      const t = process.hrtime.bigint();
      await b.boot({ sandbox: spec(id, backend), incarnation: { host: 'bench', uid: randomBytes(6).toString('hex') }, runDir, plan: { endpoint: {}, command, env: guestEnv() } });
      const booted = ms(t);
      await output.seen;
      const out = ms(t);
      output.close();
      // Alternate between the two ways a guest ends.
      if (i % 2 === 0) {
        killedAt = process.hrtime.bigint();
        process.kill(b.pid!, 'SIGKILL');
        const detected = await exited;
        await b.shutdown();
        if (i >= 0) detects.push(detected);
      } else {
        const s = process.hrtime.bigint();
        await b.shutdown();
        if (i >= 0) shutdowns.push(ms(s));
      }
      if (i >= 0) {
        boots.push(booted);
        first.push(out);
      }
    }
  } finally {
    clearInterval(keepAlive);
    await rm(root, { recursive: true, force: true });
  }
  return { backend, guest, bootToFirstOutput: summarize(first), boot: summarize(boots), shutdown: summarize(shutdowns), detectGuestKilled: summarize(detects) };
}

/** Every combination this host can run. */
export async function benchBackends(samples: number): Promise<BackendFigures[]> {
  const out: BackendFigures[] = [];
  const backends = process.getuid?.() === 0 ? (['namespace', 'process'] as const) : (['process'] as const);
  for (const backend of backends) for (const guest of ['sh', 'node'] as const) out.push(await benchBackend(backend, guest, samples));
  return out;
}

export function backendTable(figures: BackendFigures[]): string[] {
  if (figures.length === 0) return [];
  const cell = (l: Latency) => `${l.p50} / ${l.p99}`;
  return [
    '## Guest backends (p50 / p99 ms)',
    '',
    '| backend | guest | boot → first output | boot() | shutdown | guest killed → reported |',
    '|---|---|---|---|---|---|',
    ...figures.map((f) => `| ${f.backend} | ${f.guest} | ${cell(f.bootToFirstOutput)} | ${cell(f.boot)} | ${cell(f.shutdown)} | ${cell(f.detectGuestKilled)} |`),
    '',
    'The bare `node` guest here has no SIGTERM handler, and PID 1 of a pid namespace ignores a signal it does not handle: its shutdown is the 2 s grace, then SIGKILL. The real guest agents handle SIGTERM.',
    '',
  ];
}
