// Orphan reaping for a guest that runs as PID 1. The kernel hands every orphaned process
// of a pid namespace to its PID 1, and only waitpid(2) clears the zombie it becomes when
// it exits; Node waits only for the children it spawned itself. So container processes
// do not run in the guest's own pid namespace but in a nested one whose PID 1 is a shell
// that does nothing but wait: each orphan (a daemon, a grandchild left behind) ends up
// there and is reaped, while the guest keeps exact exit statuses of its own children.
// Being an ordinary member of that namespace (not its PID 1), a container process still
// dies of a signal it does not handle (SIGTERM to `sleep` gives 143).
//
//   guest ─ unshare --pid --fork ─ sh (ns PID 1, `wait` in a loop: reaps everything)
//   guest ─ nsenter --pid --target <sh> ─ container process (in the nested namespace)
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { childrenOf, procInfo, sendSignal } from './proc.js';
import { requireTool } from './tools.js';
import type { GuestLog } from './log.js';

// A foreground `wait` makes the shell block in wait(2) for any child, which reaps the
// orphans it adopts too; the sleep only gives it a job to wait for.
const REAPER_SCRIPT = "trap '' HUP INT TERM; while :; do sleep 2147483647 & wait; done";
const START_TIMEOUT_MS = 5_000;

export class Reaper {
  private child: ChildProcess | undefined;
  private nsInit: number | undefined;
  private starting: Promise<number> | undefined;

  constructor(private readonly log?: GuestLog) {}

  /** The pid (in the guest's namespace) of the nested namespace's PID 1, started on first use. */
  pid(): Promise<number> {
    const state = this.nsInit === undefined ? undefined : procInfo(this.nsInit)?.state;
    if (state !== undefined && state !== 'Z') return Promise.resolve(this.nsInit!);
    this.starting ??= this.start().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async start(): Promise<number> {
    const unshare = requireTool('unshare', 'to give container processes a reaping PID 1');
    const sh = requireTool('sh', 'as the reaper');
    // --kill-child: if the waiting unshare dies, the namespace goes with it.
    const child = spawn(unshare, ['--pid', '--fork', '--kill-child', '--', sh, '-c', REAPER_SCRIPT], { stdio: 'ignore' });
    this.child = child;
    let exited = false;
    child.once('exit', (code, signal) => {
      exited = true;
      if (this.child === child) {
        this.child = undefined;
        this.nsInit = undefined;
      }
      this.log?.debug('reaper namespace ended', { code, signal });
    });
    child.once('error', () => (exited = true));
    const end = Date.now() + START_TIMEOUT_MS;
    while (!exited && child.pid !== undefined && Date.now() < end) {
      const [init] = childrenOf(child.pid);
      if (init !== undefined) {
        this.nsInit = init;
        this.log?.debug('reaper namespace started', { pid: init });
        return init;
      }
      await sleep(1);
    }
    child.kill('SIGKILL');
    throw new Error('cannot start the reaper pid namespace (unshare --pid needs CAP_SYS_ADMIN)');
  }

  /** Ends the namespace: SIGKILL to its PID 1 takes every process in it along. */
  async stop(): Promise<void> {
    const child = this.child;
    const init = this.nsInit;
    this.child = undefined;
    this.nsInit = undefined;
    if (init !== undefined) sendSignal(init, 'SIGKILL');
    if (child && child.exitCode === null && child.signalCode === null) {
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        if (init === undefined) child.kill('SIGKILL');
      });
    }
  }
}
