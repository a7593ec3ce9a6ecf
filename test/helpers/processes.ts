// What a sandbox left on the host, seen through /proc: every suite that checks for
// leftovers asks the same question the same way.
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { SANDBOX_ENV } from '../../actors/backends/guest-files.js';

/** Whether a process exists and has not exited (a zombie waiting to be reaped is dead). */
export function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** The name of a sandbox's host cgroup directory (`<host>.<sandbox id>.<incarnation>`), any host and incarnation. */
export function sandboxCgroupName(id: string): RegExp {
  return new RegExp(`^[A-Za-z0-9_-]+\\.${id}\\.[0-9a-f]+$`);
}

/** A path in /proc/<pid>/cgroup that lies in (or below) the sandbox's host cgroup. */
export function sandboxCgroupPattern(id: string): RegExp {
  return new RegExp(`/virtactors/[A-Za-z0-9_-]+\\.${id}\\.[0-9a-f]+(/|$)`, 'm');
}

/** Host pids whose environment or cgroup marks them as the sandbox's. */
export async function sandboxProcesses(id: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const [environ, cgroup] = await Promise.all([
      readFile(`/proc/${entry}/environ`, 'latin1').catch(() => ''),
      readFile(`/proc/${entry}/cgroup`, 'utf8').catch(() => ''),
    ]);
    const zombie = /^State:\s+Z/m.test(await readFile(`/proc/${entry}/status`, 'utf8').catch(() => ''));
    if (zombie) continue;
    if (environ.split('\0').includes(`${SANDBOX_ENV}=${id}`) || sandboxCgroupPattern(id).test(cgroup)) found.push(Number(entry));
  }
  return found;
}

