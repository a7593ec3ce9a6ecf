// What the VM suites share: whether qemu can run here at all, a request helper with room
// for a boot under TCG, pool state from service discovery, and the host-side leftovers of
// a VM (qemu processes, mounts) seen through /proc.
import { readdirSync, readFileSync } from 'node:fs';
import { findProgram } from '../../actors/backends/vm/tools.js';
import { mountsUnder } from '../../actors/shared-dir.js';
import { srvSubjects } from '../../bus/subjects.js';
import { decodeTrusted } from '../../bus/codec.js';
import type { RuntimeContext } from '../helpers/runtime.js';

/** Why the VM suites cannot run on this machine; undefined when they can. */
export function vmSkipReason(): string | undefined {
  if (!findProgram('qemu-system-x86_64')) return 'qemu-system-x86_64 is not installed (`npm run setup` installs qemu-system-x86)';
  if (process.getuid?.() !== 0) return 'container rootfs reach a VM through bind mounts, which need root (as CI runs)';
  return undefined;
}

/** A boot under TCG on a busy 2-core machine takes tens of seconds. */
export const BOOT_MS = 240_000;

/** A request whose error reply fails the test; long enough for a cold boot. */
export async function vmOk<T = Record<string, unknown>>(rt: RuntimeContext, subject: string, body: unknown = {}): Promise<T> {
  const reply = await rt.client.request(subject, body, BOOT_MS);
  if (!reply.ok) throw new Error(`${subject}: ${reply.error?.code}: ${reply.error?.message}`);
  return reply as T;
}

/** The host's $SRV.INFO metadata (where the pool's state is). */
export async function hostMetadata(rt: RuntimeContext): Promise<Record<string, string>> {
  const subject = srvSubjects('INFO', rt.host.host.host)[2]!;
  const msg = await rt.client.nc.request(subject, new Uint8Array(), { timeout: 5_000 });
  return (decodeTrusted<{ metadata: Record<string, string> }>(msg.data).metadata ?? {}) as Record<string, string>;
}

/** Polls the pool until it has `ready` VMs (bounded by BOOT_MS). */
export async function poolReady(rt: RuntimeContext, ready: number): Promise<Record<string, string>> {
  const end = Date.now() + BOOT_MS;
  for (;;) {
    const meta = await hostMetadata(rt);
    if (Number(meta['vm.pool.ready']) >= ready) return meta;
    if (Date.now() > end) throw new Error(`the VM pool did not reach ${ready} ready VMs: ${JSON.stringify(meta)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

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
