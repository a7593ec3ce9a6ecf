// The warm pool (Kata's VM factory): VMs booted ahead, their agent answering, so that a
// new sandbox takes one instead of waiting for a boot. `VC_VM_POOL=N` keeps N kata VMs;
// `VC_VM_POOL=kata:2,hyperstart:1` names the agents. The pool refills in the background,
// one boot at a time (a boot under TCG takes a core for seconds), once the sandbox that
// took a VM is set up in it, and backs off after a failed boot. A pooled VM that dies is
// dropped and replaced.
import type { Logger } from 'pino';
import { Vm, type VmAgent, type VmConfig } from './vm.js';

export type PoolTargets = Partial<Record<VmAgent, number>>;

/** Parses VC_VM_POOL: a count (kata VMs) or agent:count pairs. */
export function parsePoolTargets(value: string | undefined): PoolTargets {
  if (!value?.trim()) return {};
  if (/^\d+$/.test(value.trim())) return { kata: Number(value.trim()) };
  const targets: PoolTargets = {};
  for (const part of value.split(',')) {
    const m = /^\s*(kata|hyperstart)\s*[:=]\s*(\d+)\s*$/.exec(part);
    if (!m) throw new Error(`VC_VM_POOL=${value}: use a count (kata VMs) or agent:count pairs, e.g. kata:2,hyperstart:1`);
    targets[m[1] as VmAgent] = Number(m[2]);
  }
  return targets;
}

export interface PoolAgentStatus {
  target: number;
  ready: number;
  booting: number;
}

export interface PoolStatus {
  /** Wanted VMs, all agents together. */
  size: number;
  ready: number;
  booting: number;
  /** VMs handed to sandboxes since the pool started. */
  taken: number;
  failedBoots: number;
  lastError?: string;
  agents: Partial<Record<VmAgent, PoolAgentStatus>>;
  /** Mean boot time of the pooled VMs so far, ms. */
  bootMsMean?: number;
}

const MAX_BACKOFF_MS = 60_000;

export class VmPool {
  private readonly idle = new Map<VmAgent, Vm[]>();
  private booting: { agent: VmAgent; abort: AbortController } | undefined;
  private filling: Promise<void> | undefined;
  private closed = false;
  private taken = 0;
  private failedBoots = 0;
  private lastError: string | undefined;
  private backoffMs = 0;
  private bootMsTotal = 0;
  private boots = 0;
  /** Called after every change, for whoever publishes the pool's state. */
  onChange: () => void = () => {};

  constructor(
    private readonly targets: PoolTargets,
    private readonly config: (agent: VmAgent) => VmConfig,
    private readonly boot: (config: VmConfig, signal: AbortSignal) => Promise<Vm>,
    private readonly log: Logger,
  ) {}

  get enabled(): boolean {
    return Object.values(this.targets).some((n) => (n ?? 0) > 0);
  }

  /** Starts (or resumes) filling the pool in the background. */
  fill(): void {
    if (this.closed || this.filling || !this.enabled) return;
    this.filling = this.fillLoop().finally(() => {
      this.filling = undefined;
      // A VM taken or lost while the loop was finishing.
      if (!this.closed && this.missing()) this.fill();
    });
  }

  private missing(): VmAgent | undefined {
    for (const [agent, target] of Object.entries(this.targets) as [VmAgent, number][]) {
      if ((this.idle.get(agent)?.length ?? 0) < target) return agent;
    }
    return undefined;
  }

  private async fillLoop(): Promise<void> {
    for (let agent = this.missing(); agent && !this.closed; agent = this.missing()) {
      if (this.backoffMs) await new Promise((r) => setTimeout(r, this.backoffMs).unref());
      if (this.closed) return;
      const started = Date.now();
      const abort = new AbortController();
      const vm = this.boot(this.config(agent), abort.signal);
      this.booting = { agent, abort };
      this.onChange();
      try {
        const booted = await vm;
        this.booting = undefined;
        if (this.closed) {
          await booted.destroy();
          return;
        }
        this.bootMsTotal += Date.now() - started;
        this.boots++;
        this.backoffMs = 0;
        this.add(agent, booted);
      } catch (err) {
        this.booting = undefined;
        if (this.closed) return;
        this.failedBoots++;
        this.lastError = (err as Error).message;
        this.backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(1000, this.backoffMs * 2));
        this.log.warn({ err, agent, retryInMs: this.backoffMs }, 'vm pool: a boot failed');
      }
      this.onChange();
    }
  }

  private add(agent: VmAgent, vm: Vm): void {
    const list = this.idle.get(agent) ?? [];
    list.push(vm);
    this.idle.set(agent, list);
    vm.onExit((exit) => {
      const at = list.indexOf(vm);
      if (at < 0) return; // taken meanwhile: its sandbox reports the exit
      list.splice(at, 1);
      this.log.warn({ vm: vm.id, status: exit.status }, 'vm pool: an idle VM exited; booting another');
      void vm.destroy();
      this.onChange();
      this.fill();
    });
  }

  /**
   * A ready VM for this agent and share tag, if the pool has one. The pool refills once
   * `settled` resolves (the taker's sandbox is set up in the VM): the next boot takes a
   * core for seconds under TCG, which the VM just taken and the host need meanwhile.
   */
  take(agent: VmAgent, shareTag: string, settled: Promise<unknown> = Promise.resolve()): Vm | undefined {
    const list = this.idle.get(agent) ?? [];
    const at = list.findIndex((vm) => !vm.exit && vm.config.shareTag === shareTag);
    if (at < 0) return undefined;
    const [vm] = list.splice(at, 1);
    this.taken++;
    this.onChange();
    void settled.then(
      () => this.fill(),
      () => this.fill(),
    );
    return vm;
  }

  /** Host pids of the idle VMs' qemu processes, of one agent or all (for memory figures). */
  idlePids(agent?: VmAgent): number[] {
    const vms = agent ? (this.idle.get(agent) ?? []) : [...this.idle.values()].flat();
    return vms.map((vm) => vm.pid).filter((p): p is number => p !== undefined);
  }

  status(): PoolStatus {
    const agents: PoolStatus['agents'] = {};
    let size = 0;
    let ready = 0;
    for (const [agent, target] of Object.entries(this.targets) as [VmAgent, number][]) {
      const n = this.idle.get(agent)?.length ?? 0;
      const booting = this.booting?.agent === agent ? 1 : 0;
      agents[agent] = { target, ready: n, booting };
      size += target;
      ready += n;
    }
    const status: PoolStatus = { size, ready, booting: this.booting ? 1 : 0, taken: this.taken, failedBoots: this.failedBoots, agents };
    if (this.lastError) status.lastError = this.lastError;
    if (this.boots) status.bootMsMean = Math.round(this.bootMsTotal / this.boots);
    return status;
  }

  /** Stops refilling and destroys every idle VM (and one still booting). */
  async close(): Promise<void> {
    this.closed = true;
    this.booting?.abort.abort();
    const idle = [...this.idle.values()].flat();
    this.idle.clear();
    await Promise.all(idle.map((vm) => vm.destroy()));
    await this.filling;
  }
}
