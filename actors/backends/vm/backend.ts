// The vm backend: the sandbox's guest agent runs inside a qemu VM — one taken from the
// warm pool when it has one for the agent, else booted for the sandbox. The agent's
// endpoint sockets are the host end of the VM's channels; the VM's 9p shared directory is
// where container rootfs are staged. qemu's exit is the guest's exit.
import { appendFileSync, mkdirSync } from 'node:fs';
import { invalidArgument, failedPrecondition } from '../../../bus/errors.js';
import type { GuestEndpoint } from '../../agents/agent.js';
import { OCI_RUNTIME_SETTING } from '../../guest-binaries.js';
import type { AdoptRequest, Backend, BackendStatus, BootRequest, GuestExit } from '../backend.js';
import { logPath, removeGuestFiles, writePidFile } from '../guest-files.js';
import { DEFAULT_SHARE_TAGS, requireVmAgent, type VmHost } from './host.js';
import type { Vm } from './vm.js';

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

  onExit(listener: (exit: GuestExit) => void): void {
    this.listeners.push(listener);
  }

  status(): BackendStatus | undefined {
    const vm = this.vm;
    if (!vm) return undefined;
    return { vm: { accel: vm.accel, machine: vm.machine, warm: this.warm, pid: this.pid ?? 0 } };
  }

  /**
   * Not yet: the VM's channels (yamux, the hyperstart relay) lived in the runtime that
   * died, so its agent cannot be reached again. The VM goes; the sandbox fails.
   */
  async adopt(request: AdoptRequest): Promise<boolean> {
    this.host.removeSandboxVm(request.sandbox.id);
    return false;
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
    const taken = this.host.pool.take(agent, tag);
    this.warm = !!taken;
    const vm = taken ?? (await this.host.bootVm(this.host.config(agent, tag)));
    this.vm = vm;
    try {
      vm.claim(request.sandbox.id);
      mkdirSync(request.runDir, { recursive: true, mode: 0o750 });
      const endpoint = await vm.channel.attach(request.plan.endpoint);
      if (vm.pid !== undefined) writePidFile(request.runDir, vm.pid);
      vm.onExit((exit) => {
        if (this.stopRequested || this.vm !== vm) return;
        for (const l of this.listeners) l(exit);
      });
      this.endpoint = { ...endpoint, share: { hostDir: vm.shareDir, tag, bind: true } };
      return this.endpoint;
    } catch (err) {
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
    // The console is all the guest said: it stays with the sandbox's log.
    const console = vm.readConsole();
    if (console) appendFileSync(logPath(request.runDir), console);
    await removeGuestFiles(request.runDir, this.endpoint.grpcAddress || this.endpoint.ctlSocket ? this.endpoint : request.plan.endpoint);
  }
}
