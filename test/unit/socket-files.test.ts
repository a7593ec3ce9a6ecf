// What the runtime and the guests remove: only the socket they made, never a file that
// happens to be at the path.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { claimSocketPath, ownSocket } from '../../guest/common/socket-file.js';
import { removeSocketIn } from '../../actors/backends/guest-files.js';

const dir = mkdtempSync(join(tmpdir(), 'vc-sock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function listen(path: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(path, () => resolve(s));
  });
}

/** A socket file nobody listens on any more: its listener was killed, as a guest can be. */
async function deadSocket(path: string): Promise<void> {
  // A server that closes unlinks its socket file; one killed by SIGKILL leaves it behind.
  const script = `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`;
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  await once(child, 'exit');
  expect(existsSync(path)).toBe(true);
}

describe('guest sockets', () => {
  it('refuses to listen where a regular file is, and leaves it', async () => {
    const path = join(dir, 'file');
    writeFileSync(path, 'keep');
    await expect(claimSocketPath(path)).rejects.toThrow(/not a socket/);
    expect(existsSync(path)).toBe(true);
  });

  it('refuses a socket another guest still listens on', async () => {
    const path = join(dir, 'live.sock');
    const s = await listen(path);
    await expect(claimSocketPath(path)).rejects.toThrow(/running agent/);
    expect(existsSync(path)).toBe(true);
    await new Promise<void>((r) => s.close(() => r()));
  });

  it('replaces the dead socket of an earlier guest', async () => {
    const path = join(dir, 'dead.sock');
    await deadSocket(path);
    await claimSocketPath(path);
    expect(existsSync(path)).toBe(false);
  });

  it('removes at exit only the socket it bound, not what replaced it', async () => {
    const path = join(dir, 'own.sock');
    await deadSocket(path);
    const own = ownSocket(path);
    unlinkSync(path);
    writeFileSync(path, 'someone else');
    expect(own.remove()).toBe(false);
    expect(existsSync(path)).toBe(true);
  });
});

describe('runtime clean-up', () => {
  it('removes a socket in the run directory, never a file, nor anything outside it', async () => {
    const runDir = mkdtempSync(join(dir, 'run-'));
    const sock = join(runDir, 'kata.sock');
    await deadSocket(sock);
    const file = join(runDir, 'hyper.sock');
    writeFileSync(file, 'not a socket');
    const outside = join(dir, 'outside.sock');
    await deadSocket(outside);
    expect(await removeSocketIn(runDir, file)).toBe(false);
    expect(await removeSocketIn(runDir, outside)).toBe(false);
    expect(await removeSocketIn(runDir, join(runDir, '..', 'outside.sock'))).toBe(false);
    expect(await removeSocketIn(runDir, sock)).toBe(true);
    expect([existsSync(file), existsSync(outside), existsSync(sock)]).toEqual([true, true, false]);
  });
});
