// What the VM suites share: whether qemu can run here at all, a request helper with room
// for a boot under TCG, pool state from service discovery, and the host-side leftovers of
// a VM (qemu processes, mounts) seen through /proc.
import { readdirSync, readFileSync } from 'node:fs';
import { findProgram } from '../../actors/backends/vm/tools.js';
import { mountsUnder } from '../../actors/shared-dir.js';
import type { RuntimeContext } from '../helpers/runtime.js';

/** Why the VM suites cannot run on this machine; undefined when they can. */
export function vmSkipReason(): string | undefined {
  // Only qemu missing stops them; like the other end-to-end suites they need root (rootfs
  // are bind-mounted into the VM's share), as CI runs.
  if (!findProgram('qemu-system-x86_64')) return 'qemu-system-x86_64 is not installed (`npm run setup` installs qemu-system-x86)';
  return undefined;
}

/** A boot under TCG on a busy 2-core machine takes tens of seconds. */
export const BOOT_MS = 240_000;

/** A command whose error reply fails the test; the reply may take a cold boot. */
export const vmOk: (rt: RuntimeContext, ...args: Parameters<RuntimeContext['ok']>) => ReturnType<RuntimeContext['ok']> = (rt, name, params, request) =>
  rt.client.call(name, params, request, { timeoutMs: BOOT_MS }) as ReturnType<RuntimeContext['ok']>;

/** The host's $SRV.INFO metadata (where the pool's state is). */
export async function hostMetadata(rt: RuntimeContext): Promise<Record<string, string>> {
  const found = await rt.client.discover('INFO', 500);
  const mine = found.map((f) => (f.metadata ?? {}) as Record<string, string>).find((m) => m.host === rt.host.host.host);
  if (!mine) throw new Error(`host ${rt.host.host.host} did not answer $SRV.INFO`);
  return mine;
}

/** Polls the host's metadata until `test` holds, for at most `ms`. */
async function metadataWhen(rt: RuntimeContext, what: string, test: (meta: Record<string, string>) => boolean, ms: number, everyMs: number): Promise<Record<string, string>> {
  const end = Date.now() + ms;
  for (;;) {
    const meta = await hostMetadata(rt);
    if (test(meta)) return meta;
    if (Date.now() > end) throw new Error(`${what} within ${ms} ms: ${JSON.stringify(meta)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Polls the pool until it has `ready` VMs (bounded by BOOT_MS). */
export const poolReady = (rt: RuntimeContext, ready: number) =>
  metadataWhen(rt, `the VM pool did not reach ${ready} ready VMs`, (m) => Number(m['vm.pool.ready']) >= ready, BOOT_MS, 250);

/** The host's metadata once its pool boots (or holds) a VM again (bounded by 10 s). */
export const refillStarted = (rt: RuntimeContext) =>
  metadataWhen(rt, 'the VM pool did not start a refill', (m) => Number(m['vm.pool.booting']) + Number(m['vm.pool.ready']) > 0, 10_000, 100);

/** qemu processes whose command line names a path under `dir` (the VMs of one runtime). */
export function qemuProcessesUnder(dir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline = '';
    let status = '';
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      status = readFileSync(`/proc/${entry}/status`, 'utf8');
    } catch {
      continue;
    }
    if (/^State:\s+Z/m.test(status)) continue;
    if (cmdline.startsWith(findProgram('qemu-system-x86_64') ?? '\0') && cmdline.includes(dir)) found.push(Number(entry));
  }
  return found;
}

export { mountsUnder };
