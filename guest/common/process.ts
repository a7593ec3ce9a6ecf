// One process of a container: how it is started (the wrapper chain below), its output
// held for readers, its stdin, signals, terminal size and exit status.
//
// Node cannot chroot, change namespaces or allocate a terminal, so small host programs
// run around the process, outermost first, each only when needed:
//   sh      joins the container's cgroups (echo 0 > cgroup.procs), then execs the rest
//   script  allocates a pseudo-terminal (util-linux; forks the rest on the terminal)
//   nsenter enters the reaper's pid namespace (forks), with root, cwd and user; or
//   unshare changes root, cwd and user (no namespace flags: execs in place)
// The pid reported and signalled is the innermost process; the wrappers in between are
// never counted as the container's processes.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition } from './errors.js';
import { OutputBuffer } from './output-buffer.js';
import { childrenOf, exitStatus, sendSignal } from './proc.js';
import { requireTool } from './tools.js';
import type { Identity, UserRef } from './user.js';

export interface ProcessSpec {
  args: string[];
  /** "KEY=value" entries: the process gets exactly these. */
  env: string[];
  /** Inside the container's root; default "/". */
  cwd?: string;
  user?: UserRef;
  /** A pseudo-terminal: output arrives on stdout only. */
  terminal?: boolean;
  consoleSize?: { rows: number; cols: number };
}

/** The first word of a process's command line; "" when it is gone. */
function argv0(pid: number): string {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
    return cmdline.slice(0, cmdline.indexOf('\0') >>> 0);
  } catch {
    return '';
  }
}

export interface LaunchContext {
  /** Root directory to chroot into; "" for the guest's own. */
  root: string;
  /** PID 1 of the reaper namespace to run in (a guest that is PID 1 itself). */
  reaperPid?: number;
  /** cgroup.procs files to join before the process runs. */
  cgroupProcs: readonly string[];
}

const JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift; exec "$@"';
const FIND_TIMEOUT_MS = 5_000;

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function envObject(env: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of env) {
    const i = e.indexOf('=');
    if (i > 0) out[e.slice(0, i)] = e.slice(i + 1);
  }
  return out;
}

export interface Launch {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  ids?: { uid: number; gid: number };
  /** How many wrappers fork on the way to the process. */
  forks: number;
  /** The last cgroup.procs file the process joins (it runs only after that). */
  joins?: string;
  /** Held at a start gate (fd 3) until open(): one more fork follows then. */
  gate?: boolean;
  /**
   * argv[0] of the innermost process, when known: an OCI runtime may fork short-lived
   * helpers of its own, so the process is told apart from them by what it runs.
   */
  program?: string;
}

/** The command line that starts `program` (a path as the container sees it) for a spec. */
export function planLaunch(spec: ProcessSpec, ctx: LaunchContext, program: string, identity: Identity | undefined): Launch {
  const cwd = spec.cwd || '/';
  const chroot = ctx.root !== '' && ctx.root !== '/';
  const env = envObject(spec.env);
  const idArgs = identity ? [`--setgid=${identity.gid}`, `--setuid=${identity.uid}`] : [];
  let argv = [program, ...spec.args.slice(1)];
  let spawnCwd = cwd;
  let ids: Launch['ids'];
  let forks = 0;
  const outerWrappers = spec.terminal || ctx.cgroupProcs.length > 0;

  if (ctx.reaperPid !== undefined) {
    const where = chroot ? [`--root=${ctx.root}`, `--wdns=${cwd}`] : [`--wd=${cwd}`];
    argv = [requireTool('nsenter', 'to run processes in the reaper namespace'), `--target=${ctx.reaperPid}`, '--pid', ...where, ...idArgs, '--', ...argv];
    spawnCwd = '/';
    forks++;
  } else if (chroot || (identity && outerWrappers)) {
    argv = [requireTool('unshare', 'to change root or user'), ...(chroot ? [`--root=${ctx.root}`] : []), `--wd=${cwd}`, ...idArgs, '--', ...argv];
    spawnCwd = '/';
  } else if (identity) {
    ids = { uid: identity.uid, gid: identity.gid };
  }

  const launchEnv = { ...env };
  if (spec.terminal) {
    argv = onTerminal(argv, spec, env.SHELL);
    launchEnv.SHELL = requireTool('sh', 'to start a terminal process');
    forks++;
  }
  if (ctx.cgroupProcs.length > 0) {
    argv = [requireTool('sh', 'to join cgroups'), '-c', JOIN_CGROUPS, 'va-join', ...ctx.cgroupProcs, '--', ...argv];
  }
  const joins = ctx.cgroupProcs.at(-1);
  return { argv, env: launchEnv, cwd: spawnCwd, forks, ...(ids ? { ids } : {}), ...(joins ? { joins } : {}) };
}

/** Runs argv on a new pseudo-terminal (util-linux script, which forks it); SHELL must be sh for script. */
function onTerminal(argv: string[], spec: ProcessSpec, shell: string | undefined): string[] {
  // script runs the command with $SHELL -c; the process gets its own SHELL back.
  const restore = shell === undefined ? 'unset SHELL' : `SHELL=${quote(shell)}; export SHELL`;
  // The initial size is set on the terminal before the process runs.
  const size = spec.consoleSize && spec.consoleSize.rows > 0 && spec.consoleSize.cols > 0
    ? `${quote(requireTool('stty', 'to size a terminal'))} rows ${spec.consoleSize.rows} cols ${spec.consoleSize.cols} 2>/dev/null; `
    : '';
  return [requireTool('script', 'for a terminal'), '-q', '-e', '-f', '-c', `${size}${restore}; exec ${argv.map(quote).join(' ')}`, '/dev/null'];
}

// Joins the cgroups, covers a cgroup2 mount with an empty tmpfs when one is named and
// unmounts the named cgroup hierarchies listed (in the mount namespace of its own the
// wrapper runs in), then execs the OCI runtime.
const OCI_PRELUDE = `while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift
if [ -n "$1" ]; then "$2" -t tmpfs -o ro,nosuid,nodev,noexec,size=4k virtactors-hidden "$1" || exit 125; fi
um=$3 n=$4; shift 4
while [ "$n" -gt 0 ]; do "$um" -l "$1" || exit 125; n=$((n - 1)); shift; done
exec "$@"`;

export interface RuntimeLaunchContext {
  cgroupProcs: readonly string[];
  /** unshare --mount ... when the runtime must not see some cgroup mounts; [] otherwise. */
  privateMount: readonly string[];
  hiddenMount?: string;
  /** Mounts the runtime runs without (unmounted in its private mount namespace). */
  unmounts?: readonly string[];
  terminal?: boolean;
  consoleSize?: ProcessSpec['consoleSize'];
  /** The init process, held at its start gate. */
  gate?: boolean;
  /** argv[0] of the process the runtime forks (the gate shell for an init). */
  program: string;
}

/** The command line that runs the OCI runtime (run or exec) for a container process; the runtime forks the process. */
export function planRuntimeLaunch(runtimeArgv: string[], ctx: RuntimeLaunchContext): Launch {
  let argv = runtimeArgv;
  let forks = 1;
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  const unmounts = ctx.unmounts ?? [];
  if (ctx.cgroupProcs.length > 0 || ctx.hiddenMount || unmounts.length > 0) {
    const mount = ctx.hiddenMount ? requireTool('mount', 'to hide a cgroup2 mount') : '';
    const umount = unmounts.length > 0 ? requireTool('umount', 'to run the OCI runtime without some cgroup mounts') : '';
    argv = [
      ...ctx.privateMount, requireTool('sh', 'to join cgroups'), '-c', OCI_PRELUDE, 'va-oci', ...ctx.cgroupProcs, '--',
      ctx.hiddenMount ?? '', mount, umount, String(unmounts.length), ...unmounts, ...argv,
    ];
  }
  // Outermost, so that the one child of script is the chain that becomes the runtime (the
  // prelude's umount is a child of that, told apart from the process by its program).
  if (ctx.terminal) {
    argv = onTerminal(argv, { args: [], env: [], ...(ctx.consoleSize ? { consoleSize: ctx.consoleSize } : {}) }, undefined);
    env.SHELL = requireTool('sh', 'to start a terminal process');
    forks++;
  }
  // No wait for the cgroup here: the process is found only once the runtime forked it, from inside.
  return { argv, env, cwd: '/', forks, program: ctx.program, ...(ctx.gate ? { gate: true } : {}) };
}

export class ManagedProcess {
  readonly stdout = new OutputBuffer();
  readonly stderr = new OutputBuffer();
  /** The process's pid (the innermost of the chain). */
  pid: number;
  /** Wrapper pids between the guest and the process (never signalled on their own). */
  readonly wrappers = new Set<number>();
  status: number | undefined;
  exitedAt: Date | undefined;
  /** WaitProcess has returned this process's status. */
  waited = false;
  readonly exited: Promise<number>;
  private stdinOpen = true;

  private constructor(
    readonly containerId: string,
    readonly execId: string,
    readonly terminal: boolean,
    private readonly child: ChildProcess,
  ) {
    this.pid = child.pid!;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.status = exitStatus(code, signal);
        this.exitedAt = new Date();
        resolve(this.status);
      });
    });
    child.on('error', () => {});
    child.stdin!.on('error', () => {
      this.stdinOpen = false;
    });
    this.stdout.attach(child.stdout!);
    this.stderr.attach(child.stderr!);
  }

  /** Spawns a process; resolves once it runs (its pid found through the wrappers). */
  static async start(containerId: string, execId: string, spec: ProcessSpec, launch: Launch): Promise<ManagedProcess> {
    const [file, ...args] = launch.argv;
    const child = spawn(file!, args, {
      env: launch.env,
      cwd: launch.cwd,
      stdio: launch.gate ? ['pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'],
      ...(launch.ids ?? {}),
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    const p = new ManagedProcess(containerId, execId, !!spec.terminal, child);
    if (launch.joins) await p.joined(launch.joins);
    await p.findInnermost(launch.forks, launch.program);
    return p;
  }

  private get running(): boolean {
    return this.status === undefined;
  }

  /**
   * Opens the start gate of a gated process: it execs its init, which forks `program`
   * (`viaInit`), or execs the program itself (a container without an init of its own).
   */
  async open(program: string, viaInit = true): Promise<void> {
    const gate = this.child.stdio[3] as Writable | null | undefined;
    if (!gate) return;
    gate.on('error', () => {});
    gate.end('start\n');
    // The init (tini) forks the program directly: its child is the program once it has exec'd.
    if (viaInit) await this.findInnermost(1, program, true);
  }

  /** Waits until the process is in its cgroup, so that it counts as the container's from the start. */
  private async joined(procsFile: string): Promise<void> {
    const end = Date.now() + FIND_TIMEOUT_MS;
    const me = String(this.pid);
    while (this.running && Date.now() < end) {
      let procs = '';
      try {
        procs = readFileSync(procsFile, 'utf8');
      } catch {
        return;
      }
      if (procs.split('\n').includes(me)) return;
      await sleep(1);
    }
  }

  private async findInnermost(forks: number, program?: string, execd = false): Promise<void> {
    const end = Date.now() + FIND_TIMEOUT_MS;
    for (let level = 0; level < forks; level++) {
      const last = level === forks - 1;
      const wanted = (pid: number) => {
        if (!last || program === undefined) return true;
        const name = argv0(pid);
        // With `execd`, also whatever the program already exec'd into (`sh -c 'exec sleep 1'`),
        // which never shows the program's name: a child that shows its parent's has not exec'd yet.
        return name === program || (execd && name !== '' && name !== argv0(this.pid));
      };
      let next: number | undefined;
      while ((next = childrenOf(this.pid).find(wanted)) === undefined) {
        if (!this.running || Date.now() > end) return;
        await sleep(1);
      }
      this.wrappers.add(this.pid);
      this.pid = next;
    }
  }

  signal(signal: number): boolean {
    if (!this.running) return false;
    return sendSignal(this.pid, signal);
  }

  write(data: Uint8Array): Promise<number> {
    const stdin = this.child.stdin!;
    if (!this.stdinOpen || !stdin.writable) return Promise.reject(failedPrecondition(`stdin of ${this.execId} is closed`));
    return new Promise((resolve, reject) => {
      stdin.write(data, (err) => (err ? reject(failedPrecondition(`stdin of ${this.execId}: ${err.message}`)) : resolve(data.length)));
    });
  }

  closeStdin(): void {
    this.stdinOpen = false;
    this.child.stdin!.end();
  }

  /** Sets the terminal size (the process sees SIGWINCH). */
  resize(rows: number, cols: number): Promise<void> {
    if (!this.terminal) return Promise.reject(failedPrecondition(`process ${this.execId} has no terminal`));
    const stty = requireTool('stty', 'to resize a terminal');
    // The process's stdin is the terminal; opening it through /proc needs no path inside its root.
    const tty = `/proc/${this.pid}/fd/0`;
    return new Promise((resolve, reject) => {
      execFile(stty, ['-F', tty, 'rows', String(rows), 'cols', String(cols)], (err, _out, stderr) =>
        err ? reject(failedPrecondition(`cannot resize the terminal of ${this.execId}: ${stderr.trim() || err.message}`)) : resolve(),
      );
    });
  }

  /** Both output streams delivered to the end. */
  get drained(): boolean {
    return this.stdout.finished && this.stderr.finished;
  }
}
