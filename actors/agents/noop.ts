// The noop agent: every operation succeeds and does nothing (reference §2.4). A noop
// sandbox has no guest; its containers "exit" 0 when stopped, as waitProcess returns 0,
// and an exec exits 0 at once (reported like any exit, so its events and wait complete).
import type { Agent, AgentInit, AgentListener, ExecResult, ExitInfo } from './agent.js';

const exitedNow = (): ExitInfo => ({ exitStatus: 0, exitedAt: new Date().toISOString() });

export class NoopAgent implements Agent {
  readonly type = 'noop' as const;
  private listener: AgentListener | undefined;
  async init(init: AgentInit): Promise<void> {
    this.listener = init.listener;
  }
  capabilities(): number {
    return 0;
  }
  async check(): Promise<void> {}
  async disconnect(): Promise<void> {}
  async createSandbox(): Promise<void> {}
  async exec(containerId: string, _process: unknown, execId: string): Promise<ExecResult> {
    // After the reply, as a real guest reports an exit after starting the process.
    setImmediate(() => this.listener?.processExited(containerId, execId, exitedNow()));
    return { execId, pid: 0 };
  }
  async startSandbox(): Promise<void> {}
  async stopSandbox(): Promise<void> {}
  async createContainer(): Promise<void> {}
  async startContainer(): Promise<{ pid: number }> {
    return { pid: 0 };
  }
  async stopContainer(): Promise<ExitInfo> {
    return exitedNow();
  }
  async killContainer(): Promise<void> {}
  async processListContainer(): Promise<Uint8Array> {
    return new Uint8Array();
  }
  async onlineCPUMem(): Promise<void> {}
  async waitProcess(): Promise<ExitInfo> {
    return exitedNow();
  }
  async signalProcess(): Promise<void> {}
  /** A noop process has a terminal as it has everything else: the resize succeeds and does nothing. */
  async winsizeProcess(): Promise<void> {}
  async pauseContainer(): Promise<void> {}
  async resumeContainer(): Promise<void> {}
}
