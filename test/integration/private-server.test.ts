// One private nats-server per state directory: `npm start` (node dist/runtime/main.js
// without NATS_URL) reuses the server an earlier start left running, and Ctrl-C stops the
// host and its server while the guests stay for the next start to reattach.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../runtime/nats-server.js';
import { connectClient } from '../helpers/runtime.js';
import { alive, sandboxProcesses } from '../helpers/processes.js';
import { isRoot } from '../backends/helpers.js';

const stateDir = mkdtempSync(join(tmpdir(), 'vc-private-'));
const configFile = join(stateDir, 'nats', 'nats-server.conf');
const started: ChildProcess[] = [];

/** nats-server processes running this state directory's configuration. */
function serversOfStateDir(): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((pid) => {
      try {
        return alive(Number(pid)) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(configFile);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** `npm start` on the state directory; resolves with its first lines once it serves. */
async function npmStart(port: number): Promise<{ proc: ChildProcess; out: string }> {
  const env: Record<string, string | undefined> = { ...process.env, VC_STATE_DIR: stateDir, VC_NATS_PORT: String(port), VC_HOST: 'private', LOG_LEVEL: 'warn' };
  delete env.NATS_URL;
  delete env.NATS_CREDS;
  const proc = spawn(process.execPath, ['dist/runtime/main.js'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  started.push(proc);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('serving on')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`npm start exited with ${code}: ${out}`)));
  });
  return { proc, out };
}

afterAll(async () => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const pid of serversOfStateDir()) process.kill(pid, 'SIGKILL');
  for (const pid of await sandboxProcesses('kept')) process.kill(pid, 'SIGKILL');
  rmSync(stateDir, { recursive: true, force: true });
});

describe('the private server of npm start', () => {
  it('is reused by the next start after a kill -9, and stopped with the host by Ctrl-C', async () => {
    const port = await freePort();
    const first = await npmStart(port);
    const url = readFileSync(join(stateDir, 'nats.url'), 'utf8').trim();
    const pid = Number(readFileSync(join(stateDir, 'nats.pid'), 'utf8'));
    expect(serversOfStateDir()).toEqual([pid]);

    first.proc.kill('SIGKILL');
    await once(first.proc, 'exit');
    expect(alive(pid)).toBe(true);

    const second = await npmStart(port);
    expect(second.out).toContain(`reusing the private nats-server at ${url}`);
    // Still that one server, on its port: no second one over the same store.
    expect(serversOfStateDir()).toEqual([pid]);
    expect(readFileSync(join(stateDir, 'nats.url'), 'utf8').trim()).toBe(url);

    second.proc.kill('SIGINT');
    const [code] = (await once(second.proc, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(serversOfStateDir()).toEqual([]);
    expect(existsSync(join(stateDir, 'nats.url'))).toBe(false);
    expect(existsSync(join(stateDir, 'nats.pid'))).toBe(false);
  }, 60_000);

  it('starts afresh when the pid file names a process that is not its server', async () => {
    const port = await freePort();
    // A pid file left by a server long gone, its pid since reused by this very process.
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(stateDir, 'nats.pid'), `${process.pid}\n`);
    writeFileSync(join(stateDir, 'nats.url'), `nats://127.0.0.1:${port}\n`);
    const run = await npmStart(port);
    expect(run.out).not.toContain('reusing');
    const pid = Number(readFileSync(join(stateDir, 'nats.pid'), 'utf8'));
    expect(pid).not.toBe(process.pid);
    expect(serversOfStateDir()).toEqual([pid]);
    run.proc.kill('SIGINT');
    const [code] = (await once(run.proc, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(serversOfStateDir()).toEqual([]);
  }, 60_000);

  // The namespace backend needs root (CI runs as root).
  it.skipIf(!isRoot)('keeps guests across Ctrl-C: the next start reattaches them', async () => {
    const port = await freePort();
    const first = await npmStart(port);
    const url = readFileSync(join(stateDir, 'nats.url'), 'utf8').trim();
    let client = await connectClient(url, join(stateDir, 'auth', 'creds', 'operator.creds'));
    await client.call('SandboxCreate', {}, { sandbox: { id: 'kept', agent: 'kata', backend: 'namespace', containers: [{ id: 'c', args: ['sleep', '3010'] }] }, start: true });
    const guest = Number(readFileSync(join(stateDir, 'run', 'kept', 'guest.pid'), 'utf8'));
    await client.close();
    first.proc.kill('SIGINT');
    await once(first.proc, 'exit');
    expect(alive(guest)).toBe(true);
    expect(serversOfStateDir()).toEqual([]);

    const second = await npmStart(port);
    client = await connectClient(readFileSync(join(stateDir, 'nats.url'), 'utf8').trim(), join(stateDir, 'auth', 'creds', 'operator.creds'));
    try {
      const status = await client.call('SandboxStatus', { sid: 'kept' });
      expect(status.sandbox?.state).toBe('running');
      expect(status.sandbox?.containers?.map((c) => [c.id, c.state])).toEqual([['c', 'running']]);
      await client.call('SandboxDelete', { sid: 'kept' }, { force: true });
      expect(alive(guest)).toBe(false);
    } finally {
      await client.close();
      second.proc.kill('SIGINT');
      await once(second.proc, 'exit');
    }
  }, 90_000);
});
