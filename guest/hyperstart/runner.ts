// Starts one process for the hyperstart guest and reports its output and exit. Each
// process leads a new session (and process group): SIGNALPROCESS reaches the group, and
// the host finds a container's processes by their session ids.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';

export interface RunSpec {
  args: string[];
  env: Record<string, string>;
  /** Working directory inside the rootfs. */
  cwd: string;
  /** "uid" or "uid:gid" (numeric). */
  user: string;
  /** Root directory to chroot into; "" or "/" for the guest's own root. */
  rootfs: string;
}

export interface RunHandlers {
  stdout(data: Uint8Array): void;
  stderr(data: Uint8Array): void;
  /** Once the process exited and its output ended: status, or 128 + signal. */
  exit(status: number): void;
}

export interface Running {
  pid: number;
  write(data: Uint8Array): void;
  endInput(): void;
  /** Stops reading the process's output (the host reads slower than it writes), and resumes. */
  pauseOutput(): void;
  resumeOutput(): void;
}

/** After the exit, output still open (a background child holds the pipe) is cut off after this. */
const OUTPUT_GRACE_MS = 200;

export class SpawnError extends Error {}

export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
}

export function parseUser(user: string): { uid?: number; gid?: number } {
  if (!user) return {};
  const [u, g] = user.split(':');
  const uid = Number(u);
  const gid = g === undefined ? undefined : Number(g);
  if (!Number.isInteger(uid) || uid < 0 || (gid !== undefined && (!Number.isInteger(gid) || gid < 0))) {
    throw new SpawnError(`invalid user ${JSON.stringify(user)}: this guest takes a numeric uid[:gid]`);
  }
  return gid === undefined ? { uid } : { uid, gid };
}

/** Spawns the process; resolves once it runs (or rejects when it cannot start). */
export function run(spec: RunSpec, on: RunHandlers): Promise<Running> {
  if (spec.args.length === 0) return Promise.reject(new SpawnError('invalid process: no args'));
  const ids = parseUser(spec.user);
  const chroot = spec.rootfs !== '' && spec.rootfs !== '/';
  // node cannot chroot; unshare(1) with no namespace flags does chroot, chdir and the id
  // change, then execs the command in place, so the pid is kept.
  const [file, ...argv] = chroot
    ? [
        'unshare',
        `--root=${spec.rootfs}`,
        `--wd=${spec.cwd || '/'}`,
        ...(ids.gid !== undefined ? [`--setgid=${ids.gid}`] : []),
        ...(ids.uid !== undefined ? [`--setuid=${ids.uid}`] : []),
        '--',
        ...spec.args,
      ]
    : spec.args;
  return new Promise((resolve, reject) => {
    const child = spawn(file!, argv, {
      env: spec.env,
      cwd: chroot ? '/' : spec.cwd || '/',
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(chroot ? {} : ids),
    });
    let started = false;
    let status: number | undefined;
    let open = 2;
    let grace: NodeJS.Timeout | undefined;
    let reported = false;
    let outputPaused = false;
    const finish = () => {
      if (reported || status === undefined || open > 0) return;
      reported = true;
      clearTimeout(grace);
      on.exit(status);
    };
    const ended = () => {
      open--;
      finish();
    };
    child.stdout.on('data', (d: Buffer) => on.stdout(d));
    child.stderr.on('data', (d: Buffer) => on.stderr(d));
    child.stdout.once('close', ended);
    child.stderr.once('close', ended);
    child.stdin.on('error', () => {}); // EPIPE once the process stops reading
    child.once('error', (err) => {
      if (!started) reject(new SpawnError(`cannot start ${spec.args[0]}: ${err.message}`));
    });
    child.once('spawn', () => {
      started = true;
      resolve({
        pid: child.pid!,
        write: (data) => child.stdin.writable && child.stdin.write(data),
        endInput: () => child.stdin.end(),
        pauseOutput: () => {
          outputPaused = true;
          child.stdout.pause();
          child.stderr.pause();
        },
        resumeOutput: () => {
          outputPaused = false;
          child.stdout.resume();
          child.stderr.resume();
        },
      });
    });
    child.once('exit', (code, signal) => {
      if (!started) return;
      status = exitStatus(code, signal);
      // Output held back by a slow host is still owed; only an idle pipe is cut off.
      const cutOff = () => {
        if (outputPaused) {
          grace = setTimeout(cutOff, OUTPUT_GRACE_MS);
          return;
        }
        child.stdout.destroy();
        child.stderr.destroy();
      };
      grace = setTimeout(cutOff, OUTPUT_GRACE_MS);
      finish();
    });
  });
}
