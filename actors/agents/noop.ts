// The noop agent: every operation succeeds and does nothing (reference §2.4). A noop
// sandbox has no guest; its containers "exit" 0 when stopped, as waitProcess returns 0.
import type { Agent, ExecResult, ExitInfo } from './agent.js';

export class NoopAgent implements Agent {
  readonly type = 'noop' as const;
  async init(): Promise<void> {}
  capabilities(): number {
    return 0;
  }
  async check(): Promise<void> {}
  async disconnect(): Promise<void> {}
  async createSandbox(): Promise<void> {}
  async exec(_containerId: string, _process: unknown, execId: string): Promise<ExecResult> {
    return { execId, pid: 0 };
  }
  async startSandbox(): Promise<void> {}
  async stopSandbox(): Promise<void> {}
  async createContainer(): Promise<void> {}
  async startContainer(): Promise<{ pid: number }> {
    return { pid: 0 };
  }
  async stopContainer(): Promise<ExitInfo> {
    return { exitStatus: 0, exitedAt: new Date().toISOString() };
  }
  async killContainer(): Promise<void> {}
  async processListContainer(): Promise<Uint8Array> {
    return new Uint8Array();
  }
  async onlineCPUMem(): Promise<void> {}
  async waitProcess(): Promise<ExitInfo> {
    return { exitStatus: 0, exitedAt: new Date().toISOString() };
  }
  async signalProcess(): Promise<void> {}
  async pauseContainer(): Promise<void> {}
  async resumeContainer(): Promise<void> {}
}
