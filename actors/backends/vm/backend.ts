// The vm backend: the sandbox's guest agent runs inside a qemu VM — one taken from the
// warm pool when it has one for the agent, else booted for the sandbox. The agent's
// endpoint sockets are the host end of the VM's channels; the VM's 9p shared directory is
// where container rootfs are staged. qemu's exit is the guest's exit.
import { appendFileSync, mkdirSync } from 'node:fs';
import { invalidArgument, failedPrecondition } from '../../../bus/errors.js';
import type { GuestEndpoint } from '../../agents/agent.js';
import { OCI_RUNTIME_SETTING } from '../../guest-binaries.js';
import { residentBytes } from '../../processes.js';
import type { AdoptRequest, Backend, BackendStatus, BootRequest, GuestExit, GuestMemory } from '../backend.js';
import { logPath, removeGuestFiles, writePidFile } from '../guest-files.js';
import { DEFAULT_SHARE_TAGS, requireVmAgent, type VmHost } from './host.js';
import type { Vm } from './vm.js';

/** How long an adopted VM's agent gets to answer its new host end (a TCG guest is slow). */
const REATTACH_TIMEOUT_MS = 30_000;
/** The pool's refill waits at most this long for a sandbox's first call into the VM it took. */
const SETTLE_TIMEOUT_MS = 2_000;
/**
 * And then this long: after the guest's first answer the host still stores the sandbox's
 * events and answers the command, and a qemu spawned meanwhile takes the core those ms
 * need (measured: warm create+start p50 81–89 ms with the pause, 96–109 ms without).
 */
const REFILL_PAUSE_MS = 250;

export class VmBackend implements Backend {
  readonly type = 'vm' as const;
  /** The guest has a kernel of its own: no user namespace of the host's is involved. */
  readonly userNamespace = false;
  private vm: Vm | undefined;
  private warm = false;
  private stopRequested = false;
  private booting: Promise<unknown> | undefined;
  private request: BootRequest | undefined;
  private endpoint: GuestEndpoint = {};
  private readonly listeners: ((exit: GuestExit) => void)[] = [];

  constructor(private readonly host: VmHost) {}

  get pid(): number | undefined {
    return this.vm && !this.stopRequested && !this.vm.exit ? this.vm.pid : undefined;
  }

  /** The guest's cgroups are the guest kernel's: the host sees qemu's resident set. */
  guestMemory(): GuestMemory | undefined {
    const pid = this.pid;
    const bytes = pid === undefined ? undefined : residentBytes(pid);
    return bytes === undefined ? undefined : { bytes, measure: 'qemu-rss' };
  }

  onExit(listener: (exit: GuestExit) => void): void {
    this.listeners.push(listener);
  }

  status(): BackendStatus | undefined {
    const vm = this.vm;
    if (!vm) return undefined;
    return { vm: { accel: vm.accel, machine: vm.machine, warm: this.warm, pid: this.pid ?? 0 } };
  }

  /**
   * The VM an earlier runtime booted for this sandbox: adopted (shutdown removes it), and
   * if its qemu still runs, its channels dialled again and offered at the recorded
   * endpoint. A VM whose agent does not answer again stays adopted (the driver finds it
   * unreachable). False when its qemu is gone; without an endpoint to reach it by (a
   * sandbox caught creating) the VM is removed at once.
   */
  async adopt(request: AdoptRequest): Promise<boolean> {
    const { sandbox, runDir, endpoint } = request;
    const agent = sandbox.agent === 'kata' || sandbox.agent === 'hyperstart' ? sandbox.agent : undefined;
    const tag = endpoint.share?.tag;
    const found = agent && tag ? await this.host.adoptSandboxVm(sandbox.id, agent, tag).catch(() => undefined) : undefined;
    if (!found) {
      this.host.removeSandboxVm(sandbox.id);
      return false;
    }
    const { vm, warm } = found;
    this.vm = vm;
    this.warm = warm;
    this.stopRequested = false;
    this.request = { sandbox, incarnation: request.incarnation, runDir, plan: { endpoint, command: [], env: {} } };
    this.endpoint = { ...endpoint, share: { hostDir: vm.shareDir, tag: tag!, bind: true } };
    if (vm.exit) return false;
    vm.onExit((exit) => {
      if (this.stopRequested || this.vm !== vm) return;
      for (const l of this.listeners) l(exit);
    });
    try {
      await vm.reconnect(REATTACH_TIMEOUT_MS);
      this.endpoint = { ...(await vm.channel.attach(endpoint)), share: this.endpoint.share };
      if (vm.pid !== undefined) writePidFile(runDir, vm.pid);
    } catch (err) {
      this.host.log.warn({ err, sandboxId: sandbox.id, vm: vm.id }, 'vm: the adopted VM does not answer');
    }
    return vm.exit === undefined;
  }

  boot(request: BootRequest): Promise<GuestEndpoint> {
    const booting = this.start(request);
    this.booting = booting;
    return booting;
  }

  private async start(request: BootRequest): Promise<GuestEndpoint> {
    // The guest image carries crun only: runc would add its ~10 MB to every VM's initramfs
    // (and the pool's boots) for a setting that is off by default.
    if (process.env[OCI_RUNTIME_SETTING] === 'runc') {
      throw failedPrecondition(`${OCI_RUNTIME_SETTING}=runc: the vm backend's guest image runs containers through crun only; use the namespace backend, or crun for VM sandboxes`);
    }
    if (this.vm) {
      if (!this.stopRequested && !this.vm.exit) throw failedPrecondition('the guest is already running');
      await this.shutdown();
    }
    const agent = requireVmAgent(request.sandbox.agent);
    const tag = request.plan.shareTag || DEFAULT_SHARE_TAGS[agent];
    if (!/^[A-Za-z0-9_.-]{1,31}$/.test(tag)) throw invalidArgument(`9p share tag ${JSON.stringify(tag)}: use 1 to 31 letters, digits, '_', '.' or '-'`);
    this.stopRequested = false;
    this.request = request;
    // The pool boots the next VM once this sandbox is set up in the one it took.
    let claimed!: () => void;
    const settled = new Promise<void>((resolve) => (claimed = resolve));
    const taken = this.host.pool.take(agent, tag, settled);
    this.warm = !!taken;
    const vm = taken ?? (await this.host.bootVm(this.host.config(agent, tag)));
    this.vm = vm;
    try {
      vm.claim(request.sandbox.id, !!taken);
      mkdirSync(request.runDir, { recursive: true, mode: 0o750 });
      const endpoint = await vm.channel.attach(request.plan.endpoint);
      void vm.channel
        .settled(SETTLE_TIMEOUT_MS)
        .then(() => new Promise((r) => setTimeout(r, REFILL_PAUSE_MS).unref()))
        .then(claimed);
      if (vm.pid !== undefined) writePidFile(request.runDir, vm.pid);
      vm.onExit((exit) => {
        if (this.stopRequested || this.vm !== vm) return;
        for (const l of this.listeners) l(exit);
      });
      this.endpoint = { ...endpoint, share: { hostDir: vm.shareDir, tag, bind: true } };
      return this.endpoint;
    } catch (err) {
      claimed();
      await this.stop();
      throw err;
    }
  }

  /** Idempotent; a boot in progress is let finish first, then undone. */
  async shutdown(): Promise<void> {
    this.stopRequested = true;
    await this.booting?.catch(() => {});
    await this.stop();
  }

  private async stop(): Promise<void> {
    this.stopRequested = true;
    const vm = this.vm;
    const request = this.request;
    if (!vm || !request) return;
    await vm.destroy();
    // The console is all the guest said: it stays with the sandbox's log, if the disk has room.
    const console = vm.readConsole();
    try {
      if (console) appendFileSync(logPath(request.runDir), console);
    } catch (err) {
      this.host.log.warn({ err, sandboxId: request.sandbox.id }, "vm: the guest's console is not kept in the sandbox log");
    }
    await removeGuestFiles(request.runDir, this.endpoint.grpcAddress || this.endpoint.ctlSocket ? this.endpoint : request.plan.endpoint);
  }
}
