// Everything the vm backend shares on one runtime host: the guest image and kernel
// (prepared on first use, cached in the state directory), the qemu set-up (machine and
// accelerator), the warm pool, and the directory VMs live in.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { failedPrecondition } from '../../../bus/errors.js';
import { signal } from '../guest-files.js';
import { isAlive } from '../../processes.js';
import { mountsUnder } from '../../shared-dir.js';
import { DEFAULT_MEMORY_RESERVE_MIB, requireMemory } from '../memory.js';
import { prepareImage } from './image.js';
import { prepareKernel } from './kernel.js';
import { VmPool, type PoolStatus, type PoolTargets } from './pool.js';
import { qemuSetup } from './qemu.js';
import { isQemuOf, OWNER_FILE, QEMU_PID_FILE, SANDBOX_MARKER, Vm, type VmAgent, type VmConfig, type VmEnv } from './vm.js';

/** The 9p tags kata 1.x and virtcontainers' hyperstart agent used. */
export const DEFAULT_SHARE_TAGS: Record<VmAgent, string> = { kata: 'kataShared', hyperstart: 'hyperShared' };

export interface VmHostOptions {
  /** Directory under which each VM gets its own (sockets, shared directory, console). */
  root: string;
  /** Where the kernel, the image and the KVM verdict are cached. */
  cacheDir: string;
  log: Logger;
  pool?: PoolTargets;
  memoryMiB?: number;
  cpus?: number;
  bootTimeoutMs?: number;
  /** Memory the host keeps for itself: no VM boots that would leave less (MiB). */
  memoryReserveMiB?: number;
}

/** qemu's own share beside the guest's RAM: an idle 512 MiB VM's RSS is ~594 MiB. */
const QEMU_OVERHEAD_MIB = 96;

export class VmHost {
  readonly pool: VmPool;
  private env: Promise<VmEnv> | undefined;
  readonly log: Logger;

  private readonly options: VmHostOptions;

  constructor(options: VmHostOptions) {
    // qemu runs in /: every path it is given must be absolute.
    this.options = { ...options, root: resolve(options.root), cacheDir: resolve(options.cacheDir) };
    this.log = options.log.child({ backend: 'vm' });
    this.pool = new VmPool(options.pool ?? {}, (agent) => this.config(agent, DEFAULT_SHARE_TAGS[agent]), (c, signal) => this.bootVm(c, signal), this.log);
  }

  config(agent: VmAgent, shareTag: string): VmConfig {
    return { agent, shareTag, memoryMiB: this.options.memoryMiB ?? 512, cpus: this.options.cpus ?? 1 };
  }

  /** The image, kernel and qemu set-up; prepared once (again after a failure). */
  prepare(): Promise<VmEnv> {
    this.env ??= (async () => {
      const { cacheDir } = this.options;
      const kernel = await prepareKernel(cacheDir, this.log);
      const image = await prepareImage(cacheDir, kernel, this.log);
      const qemu = await qemuSetup(image, cacheDir, this.log);
      this.log.info({ accel: qemu.accel, machine: qemu.machine, kernel: kernel.release }, 'vm: backend ready');
      return { image, qemu, root: this.options.root, log: this.log, bootTimeoutMs: this.options.bootTimeoutMs ?? 180_000 };
    })();
    this.env.catch(() => (this.env = undefined));
    return this.env;
  }

  /** Boots a VM, for a sandbox or the pool, when the host has the memory for it. */
  async bootVm(config: VmConfig, signal?: AbortSignal): Promise<Vm> {
    await requireMemory(config.memoryMiB + QEMU_OVERHEAD_MIB, this.options.memoryReserveMiB ?? DEFAULT_MEMORY_RESERVE_MIB, `a VM of ${config.memoryMiB} MiB (VC_VM_MEMORY_MIB)`);
    return Vm.boot(config, await this.prepare(), signal);
  }

  /** Starts the pool (if one is configured) after clearing what a dead runtime left. */
  start(): void {
    this.removeStale();
    if (!this.pool.enabled) return;
    this.prepare().then(
      () => this.pool.fill(),
      (err) => this.log.error({ err }, 'vm: the warm pool cannot start'),
    );
  }

  poolStatus(): PoolStatus | undefined {
    return this.pool.enabled ? this.pool.status() : undefined;
  }

  /**
   * Pool VMs of an earlier runtime on this root that died without closing its pool: no
   * sandbox has them (a taken VM is marked with its sandbox), so nobody ever will. Only a
   * qemu whose command line names that VM's own directory is killed.
   */
  private removeStale(): void {
    this.removeOrphanVms((dir) => !existsSync(join(dir, SANDBOX_MARKER)), 'vm: removed an idle pool VM an earlier runtime left');
  }

  /**
   * The VM of a sandbox an earlier runtime on this root started and that cannot be
   * adopted (its qemu is gone, or the record says too little): it goes as a stale pool VM
   * does.
   */
  removeSandboxVm(sandboxId: string): void {
    this.removeOrphanVms((dir) => markerOf(dir)?.sandbox === sandboxId, 'vm: removed the VM of a sandbox an earlier runtime started');
  }

  /**
   * The VM an earlier runtime on this root started for this sandbox, to adopt: its
   * directory carries the sandbox's marker and no other live runtime owns it. It runs
   * when the pid in its pid file is a qemu whose command line names that directory (a
   * pid reused since is never taken); else it is adopted as exited. Undefined when there
   * is no such directory.
   */
  async adoptSandboxVm(sandboxId: string, agent: VmAgent, shareTag: string): Promise<{ vm: Vm; warm: boolean } | undefined> {
    for (const dir of this.vmDirs()) {
      const marker = markerOf(dir);
      if (marker?.sandbox !== sandboxId || this.ownedByOther(dir)) continue;
      const pid = Number.parseInt(readOr(join(dir, QEMU_PID_FILE)), 10);
      return { vm: Vm.adopt(this.config(agent, shareTag), await this.prepare(), dir, pid), warm: marker.warm };
    }
    return undefined;
  }

  private vmDirs(): string[] {
    try {
      return readdirSync(this.options.root)
        .filter((id) => /^vm-[0-9a-f]+$/.test(id))
        .map((id) => join(this.options.root, id));
    } catch {
      return [];
    }
  }

  /** Another runtime, alive, sharing this root: its VMs are its own. */
  private ownedByOther(dir: string): boolean {
    const owner = Number.parseInt(readOr(join(dir, OWNER_FILE)), 10);
    return Number.isInteger(owner) && owner !== process.pid && isAlive(owner);
  }

  /**
   * VM directories on this root that `which` picks and no live runtime owns: only a qemu
   * whose command line names that VM's own directory is killed, and the directory goes
   * once nothing is mounted under it.
   */
  private removeOrphanVms(which: (dir: string) => boolean, what: string): void {
    for (const dir of this.vmDirs()) {
      if (!which(dir) || this.ownedByOther(dir)) continue;
      const pid = Number.parseInt(readOr(join(dir, QEMU_PID_FILE)), 10);
      if (isQemuOf(pid, dir)) signal(pid, 'SIGKILL');
      if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
      this.log.info({ vm: basename(dir) }, what);
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** Whose the VM is, from its marker: none for a pool VM. */
function markerOf(dir: string): { sandbox: string; warm: boolean } | undefined {
  const [sandbox, flag] = readOr(join(dir, SANDBOX_MARKER)).split('\n');
  return sandbox ? { sandbox, warm: flag === 'warm' } : undefined;
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export function requireVmAgent(agent: string): VmAgent {
  if (agent === 'kata' || agent === 'hyperstart') return agent;
  throw failedPrecondition(`the vm backend runs the kata or hyperstart agent, not ${agent}`);
}
