// A sandbox whose host stopped while it was being created has no snapshot to restore:
// whatever its boot had started (a guest, a cgroup, its run directory) is removed.
import { rm } from 'node:fs/promises';
import type { SandboxRecord } from '../bus/store.js';
import type { BackendType, SandboxSpec } from '../machines/specs.js';
import { readPidFile } from './backends/guest-files.js';
import type { SandboxEnv } from './sandbox-actor.js';

const BACKENDS: readonly string[] = ['none', 'namespace', 'process', 'vm', 'external'];

export async function cleanUpHalfCreated(record: SandboxRecord, env: Pick<SandboxEnv, 'host' | 'runDir' | 'createBackend' | 'log'>): Promise<void> {
  const attach = record.attach;
  const runDir = env.runDir(record.id);
  if (attach && BACKENDS.includes(attach.backend)) {
    const backend = env.createBackend(attach.backend as BackendType);
    const sandbox = { id: record.id } as SandboxSpec;
    // The pid file is written as soon as the guest runs; adopt checks the pid is still that sandbox's.
    await backend.adopt({ sandbox, incarnation: { host: env.host, uid: attach.incarnation }, runDir, endpoint: {}, pid: readPidFile(runDir) });
    await backend.shutdown();
  }
  // The run directory is the runtime's own (created under its run root for this sandbox).
  await rm(runDir, { recursive: true, force: true });
}
