// One guest VM: a qemu process (started detached, like every guest: it outlives the
// runtime), its directory (qemu's channel sockets, the 9p shared directory, the console
// log) and the host end of its agent channel. The VM is ready once its agent answers. Its
// qemu's exit is the guest's exit. A restarted runtime adopts the VM of a sandbox it
// reattaches: the same qemu (its command line names the VM's directory), a new host end
// of its channels. destroy() leaves nothing: no qemu, no socket, no mount, no directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { unavailable } from '../../../bus/errors.js';
import type { GuestExit } from '../backend.js';
import { guestExit, signal } from '../guest-files.js';
import { HyperstartRelay, KataBridge, checkSocketPath, type AgentChannel } from './channels.js';
import type { GuestImage } from './image.js';
import { qemuArgs, type QemuSetup, type VmLayout } from './qemu.js';
import { mountsUnder, unmountAll } from '../../shared-dir.js';
import { isAlive } from '../../processes.js';
import { UNKNOWN_EXIT_STATUS } from '../../../machines/lifecycle.js';

export type VmAgent = 'kata' | 'hyperstart';

export interface VmConfig {
  agent: VmAgent;
  shareTag: string;
  memoryMiB: number;
  cpus: number;
}

export interface VmEnv {
  image: GuestImage;
  qemu: QemuSetup;
  /** Directory under which each VM gets its own. */
  root: string;
  log: Logger;
  /** How long a boot may take until the agent answers. */
  bootTimeoutMs: number;
}

const KILL_WAIT_MS = 10_000;
export const QEMU_PID_FILE = 'qemu.pid';
/** Written into a VM's directory once a sandbox has it (it is no pool VM any more): the sandbox id, then `warm` when it came from the pool. */
export const SANDBOX_MARKER = 'sandbox';
/** The pid of the runtime that started the VM. */
export const OWNER_FILE = 'owner.pid';
/**
 * How often an adopted qemu (not our child: no exit event) is looked for in /proc: well
 * under the monitor's deadline, so that its death reads as guest-exited.
 */
const ADOPTED_POLL_MS = 100;

/** Whether pid is a live qemu of the VM in `dir`: its `-name` is the VM's id and its paths lie in `dir`. */
export function isQemuOf(pid: number, dir: string): boolean {
  if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return false;
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return false;
  }
  const name = argv.indexOf('-name');
  return name > 0 && argv[name + 1] === basename(dir) && argv.some((a) => a.includes(`${dir}/`));
}

/** The value of a qemu option on its command line (`-accel tcg,tb-size=64` → `tcg`). */
function optionOf(pid: number, option: string): string | undefined {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const at = argv.indexOf(option);
    return at < 0 ? undefined : argv[at + 1]?.split(',')[0];
  } catch {
    return undefined;
  }
}

function tailOf(path: string, lines = 5): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join(' | ');
  } catch {
    return '';
  }
}

export class Vm {
  readonly dir: string;
  readonly shareDir: string;
  readonly consoleLog: string;
  readonly channel: AgentChannel;
  readonly bootedAt: number;
  child: ChildProcess | undefined;
  /** The qemu an earlier runtime started (adopted: not our child). */
  private adoptedPid: number | undefined;
  exit: GuestExit | undefined;
  readonly exited: Promise<GuestExit>;
  private resolveExit!: (exit: GuestExit) => void;
  private readonly exitListeners: ((exit: GuestExit) => void)[] = [];
  private destroying: Promise<void> | undefined;
  private readonly log: Logger;

  private constructor(
    readonly config: VmConfig,
    private readonly env: VmEnv,
    readonly id = `vm-${randomBytes(5).toString('hex')}`,
  ) {
    this.dir = join(env.root, this.id);
    this.shareDir = join(this.dir, 'shared');
    this.consoleLog = join(this.dir, 'console.log');
    this.exited = new Promise((r) => (this.resolveExit = r));
    this.log = env.log.child({ vm: this.id });
    this.bootedAt = Date.now();
    const gone = () => this.exit !== undefined;
    this.channel =
      config.agent === 'kata'
        ? new KataBridge(join(this.dir, 'agent.serial'), join(this.dir, 'kata.sock'), this.log, gone, this.exited)
        : new HyperstartRelay(join(this.dir, 'ctl.serial'), join(this.dir, 'tty.serial'), this.log, gone, this.exited);
  }

  get pid(): number | undefined {
    return this.child?.pid ?? this.adoptedPid;
  }

  get accel(): string {
    return (this.adoptedPid && optionOf(this.adoptedPid, '-accel')) || this.env.qemu.accel;
  }

  get machine(): string {
    return (this.adoptedPid && optionOf(this.adoptedPid, '-machine')) || this.env.qemu.machine;
  }

  /**
   * The VM in `dir` that an earlier runtime booted. While its qemu `pid` runs (checked
   * with isQemuOf) it is watched through /proc, and reconnect() dials its channels again;
   * a VM whose qemu is gone is taken as exited (status 255: not our child), so that
   * destroy() still unmounts what was staged in it and removes its directory.
   */
  static adopt(config: VmConfig, env: VmEnv, dir: string, pid: number): Vm {
    const vm = new Vm(config, env, basename(dir));
    vm.adoptedPid = pid;
    const gone = () => vm.exitedWith({ status: UNKNOWN_EXIT_STATUS, at: new Date().toISOString() });
    if (!isQemuOf(pid, vm.dir)) {
      gone();
      return vm;
    }
    writeFileSync(join(vm.dir, OWNER_FILE), `${process.pid}\n`);
    const timer = setInterval(() => {
      if (isQemuOf(pid, vm.dir)) return;
      clearInterval(timer);
      gone();
    }, ADOPTED_POLL_MS);
    timer.unref();
    void vm.exited.then(() => clearInterval(timer));
    return vm;
  }

  /**
   * The host end of an adopted VM's channels, new: the guest takes it as it took the
   * first (its ports read EOF while no host is connected; the next host gets a fresh
   * yamux session, or READY and the exits held meanwhile). Rejects when the agent does
   * not answer in time.
   */
  async reconnect(timeoutMs: number): Promise<void> {
    const died = this.exited.then(() => Promise.reject(new Error('qemu exited before its agent answered again')));
    await Promise.race([this.channel.ready(Date.now() + timeoutMs), died]);
    this.log.info({ pid: this.pid }, 'vm: reattached to the VM an earlier runtime started');
  }

  /** Boots a VM and waits for its agent; on failure nothing of it is left. */
  static async boot(config: VmConfig, env: VmEnv, signal?: AbortSignal): Promise<Vm> {
    const vm = new Vm(config, env);
    // An aborted boot (the pool closing) kills qemu at once instead of waiting for the agent.
    const abort = () => void vm.destroy();
    signal?.addEventListener('abort', abort, { once: true });
    try {
      await vm.start();
      return vm;
    } catch (err) {
      const tail = vm.consoleTail();
      const qemuSaid = tailOf(join(vm.dir, 'qemu.log'));
      await vm.destroy();
      const why = err instanceof Error ? err.message : String(err);
      throw unavailable(
        `the ${config.agent} VM did not come up: ${why}${qemuSaid ? `; qemu said: ${qemuSaid}` : ''}${tail ? `; its console ended with: ${tail}` : ''}`,
      );
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  private async start(): Promise<void> {
    mkdirSync(this.shareDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(this.dir, OWNER_FILE), `${process.pid}\n`);
    const ports =
      this.config.agent === 'kata'
        ? [{ name: 'agent.channel.0', socket: join(this.dir, 'agent.serial') }]
        : [
            { name: 'sh.hyper.channel.0', socket: join(this.dir, 'ctl.serial') },
            { name: 'sh.hyper.channel.1', socket: join(this.dir, 'tty.serial') },
          ];
    for (const p of ports) checkSocketPath(p.socket);
    const layout: VmLayout = { ...this.config, shareDir: this.shareDir, ports, console: this.consoleLog };
    const args = qemuArgs(this.env.qemu, this.env.image, layout);
    const logFd = openSync(join(this.dir, 'qemu.log'), 'a', 0o640);
    try {
      const child = spawn(this.env.qemu.binary, ['-name', this.id, ...args], { detached: true, stdio: ['ignore', logFd, logFd], cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
      this.child = child;
      child.once('exit', (code, sig) => this.exitedWith(guestExit(code, sig)));
      child.once('error', () => {
        if (child.pid === undefined) this.exitedWith(guestExit(127, null));
      });
      child.unref();
    } finally {
      closeSync(logFd);
    }
    if (this.child.pid !== undefined) writeFileSync(join(this.dir, QEMU_PID_FILE), `${this.child.pid}\n`);
    this.log.debug({ pid: this.child.pid, agent: this.config.agent }, 'vm: qemu started');
    // qemu may die before the agent answers (a bad option, the guest powering off).
    const died = this.exited.then((e) => Promise.reject(new Error(`qemu exited with status ${e.status}${e.signal ? ` (${e.signal})` : ''} before the agent answered`)));
    await Promise.race([this.channel.ready(Date.now() + this.env.bootTimeoutMs), died]);
    this.log.debug({ ms: Date.now() - this.bootedAt }, 'vm: agent answers');
  }

  private exitedWith(exit: GuestExit): void {
    if (this.exit) return;
    this.exit = exit;
    this.resolveExit(exit);
    for (const l of this.exitListeners.splice(0)) l(exit);
  }

  /** Marks the VM as a sandbox's: a later runtime's pool clean-up leaves it alone. */
  claim(sandboxId: string, warm: boolean): void {
    writeFileSync(join(this.dir, SANDBOX_MARKER), `${sandboxId}\n${warm ? 'warm\n' : ''}`);
  }

  /** Called once when qemu exits (at once if it already has). */
  onExit(listener: (exit: GuestExit) => void): void {
    if (this.exit) listener(this.exit);
    else this.exitListeners.push(listener);
  }

  /** The last lines the guest printed on its console. */
  consoleTail(lines = 5): string {
    return tailOf(this.consoleLog, lines);
  }

  readConsole(): string {
    try {
      return readFileSync(this.consoleLog, 'utf8');
    } catch {
      return '';
    }
  }

  /** Kills qemu, closes the channel, unmounts what was staged, removes the directory. Idempotent. */
  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      this.exitListeners.length = 0;
      this.channel.close();
      const pid = this.pid;
      // An adopted qemu is signalled only while it still is that VM's (a pid reused since is not).
      if (pid !== undefined && !this.exit && (this.child || isQemuOf(pid, this.dir))) {
        // qemu ends its VM at once on SIGTERM; SIGKILL if it lingers.
        signal(pid, 'SIGTERM');
        if (!(await Promise.race([this.exited.then(() => true), sleep(2000).then(() => false)]))) {
          signal(pid, 'SIGKILL');
          await Promise.race([this.exited, sleep(KILL_WAIT_MS)]);
        }
        if (!this.exit) this.log.error({ pid }, 'vm: qemu still there after SIGKILL');
      }
      await unmountAll(this.shareDir, this.log);
      // A mount left under the directory would make rm reach into what it exposes.
      if (mountsUnder(this.dir).length > 0) {
        this.log.error({ dir: this.dir }, 'vm: mounts are left under the VM directory: it is kept');
        return;
      }
      if (existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.destroying;
  }
}
