// The process backend: the unprivileged fallback. The guest command runs as a plain
// child process, leader of its own session and process group, sharing the host's
// namespaces; signals go to the whole group.
import { spawn, type ChildProcess } from 'node:child_process';
import { processTree, residentBytes } from '../processes.js';
import type { BootRequest, GuestMemory } from './backend.js';
import { hasLimits, limitsFromAnnotations } from './cgroups/cgroup.js';
import { DetachedGuestBackend, type GuestRun } from './detached.js';
import { guestEnvironment, signal, waitGroupGone } from './guest-files.js';

const GROUP_WAIT_MS = 5000;

/** Resolves with the pid once the process runs; rejects when it cannot be started. */
function spawned(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once('spawn', () => resolve(child.pid!));
    child.once('error', reject);
  });
}

export class ProcessBackend extends DetachedGuestBackend {
  readonly type = 'process' as const;

  /** No cgroup of its own: the resident sets of the guest and what it started. */
  guestMemory(): GuestMemory | undefined {
    const pid = this.pid;
    if (pid === undefined) return undefined;
    const sizes = processTree(pid).map(residentBytes).filter((b): b is number => b !== undefined);
    return sizes.length ? { bytes: sizes.reduce((a, b) => a + b, 0), measure: 'process-tree-rss' } : undefined;
  }

  protected environment(request: BootRequest): Record<string, string> {
    return guestEnvironment(request.plan, request.sandbox.id);
  }

  protected async launch(run: GuestRun, env: Record<string, string>, logFd: number): Promise<number> {
    const { sandbox } = run.request;
    if (hasLimits(limitsFromAnnotations(sandbox.annotations))) {
      this.log.warn({ sandboxId: sandbox.id }, 'the process backend has no cgroup: the sandbox limit annotations are not applied');
    }
    const [file, ...args] = run.request.plan.command;
    const child = spawn(file!, args, { detached: true, stdio: ['ignore', logFd, logFd], env, cwd: '/' });
    this.track(run, child);
    const pid = await spawned(child);
    // What the guest started and left behind in its group goes when it is stopped.
    run.teardown.push(async () => {
      if (signal(-pid, 'SIGKILL') && !(await waitGroupGone(pid, GROUP_WAIT_MS))) {
        this.log.warn({ pgid: pid }, 'processes of the guest group are still there after SIGKILL');
      }
    });
    return pid;
  }

  /** The guest leads its own process group: what it left in it goes with it. */
  protected adoptedTeardown(run: GuestRun): void {
    const pid = run.pid;
    if (pid === undefined) return;
    run.teardown.push(async () => {
      if (signal(-pid, 'SIGKILL') && !(await waitGroupGone(pid, GROUP_WAIT_MS))) this.log.warn({ pgid: pid }, 'processes of the guest group are still there after SIGKILL');
    });
  }

  protected terminate(run: GuestRun): boolean {
    return run.pid !== undefined && signal(-run.pid, 'SIGTERM');
  }

  protected kill(run: GuestRun): void {
    if (run.pid !== undefined) signal(-run.pid, 'SIGKILL');
  }
}
