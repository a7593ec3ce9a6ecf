// The guest kernel: Debian's linux-image-amd64 (generic, with 9p as modules), fetched with
// `apt-get download` and unpacked with `dpkg-deb -x` so that nothing is installed on the
// host (installing it would pull systemd and udev). The ELF vmlinux is extracted from the
// bzImage: qemu boots it through the PVH entry, which saves seconds under TCG. Only the
// modules the guest needs are kept, with their dependencies, in load order.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { failedPrecondition } from '../../../bus/errors.js';
import { requireProgram } from './tools.js';

const run = promisify(execFile);

/** What the guest loads: virtio over mmio (microvm) and pci (q35), the console ports, 9p. */
export const GUEST_MODULES = ['virtio_mmio', 'virtio_pci', 'virtio_console', '9pnet_virtio', '9p'];
const KERNEL_PACKAGE = 'linux-image-amd64';

export interface GuestKernel {
  /** The ELF kernel qemu boots. */
  vmlinux: string;
  /** uname -r inside the guest. */
  release: string;
  /** The Debian package it came from. */
  package: string;
  /** Module files (in `modulesDir`), in load order. */
  modules: string[];
  modulesDir: string;
}

/** The kernel in the cache, prepared first when it is not there. */
export async function prepareKernel(cacheDir: string, log: Logger): Promise<GuestKernel> {
  const dir = join(cacheDir, 'kernel');
  const recorded = readRecord(dir);
  if (recorded) return recorded;
  requireProgram('apt-get', 'to download the guest kernel');
  requireProgram('dpkg-deb', 'to unpack the guest kernel');
  const xz = requireProgram('xz', 'to extract the guest kernel');
  const pkg = await kernelPackage();
  log.info({ package: pkg }, `vm: preparing the guest kernel (apt-get download ${pkg}, first use only)`);
  mkdirSync(cacheDir, { recursive: true });
  const work = mkdtempSync(join(cacheDir, 'kernel-work-'));
  try {
    await run('apt-get', ['download', '-q', pkg], { cwd: work, maxBuffer: 16 << 20 }).catch((err: { stderr?: string; message: string }) => {
      throw failedPrecondition(`cannot download the guest kernel ${pkg} with apt-get (run \`apt-get update\` first?): ${(err.stderr ?? err.message).trim()}`);
    });
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw failedPrecondition(`apt-get download ${pkg} left no .deb file`);
    const root = join(work, 'root');
    await run('dpkg-deb', ['-x', join(work, deb), root]);
    const image = readdirSync(join(root, 'boot')).find((f) => f.startsWith('vmlinuz-'));
    if (!image) throw failedPrecondition(`${pkg} has no /boot/vmlinuz-*`);
    const release = image.slice('vmlinuz-'.length);
    const out = join(work, 'out');
    mkdirSync(join(out, 'modules'), { recursive: true });
    await extractVmlinux(xz, join(root, 'boot', image), join(out, 'vmlinux'));
    const modules = resolveModules(join(root, 'lib', 'modules', release, 'kernel'), GUEST_MODULES);
    for (const m of modules) copyFileSync(m.path, join(out, 'modules', m.file));
    const record = { package: pkg, release, modules: modules.map((m) => m.file) };
    writeFileSync(join(out, 'kernel.json'), `${JSON.stringify(record, null, 2)}\n`);
    // Another runtime may have prepared it meanwhile: either copy will do.
    if (!readRecord(dir)) {
      rmSync(dir, { recursive: true, force: true });
      try {
        renameSync(out, dir);
      } catch (err) {
        if (!readRecord(dir)) throw err;
      }
    }
    log.info({ release }, 'vm: guest kernel ready');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return readRecord(dir)!;
}

function readRecord(dir: string): GuestKernel | undefined {
  try {
    const r = JSON.parse(readFileSync(join(dir, 'kernel.json'), 'utf8')) as { package: string; release: string; modules: string[] };
    const modulesDir = join(dir, 'modules');
    if (!existsSync(join(dir, 'vmlinux')) || !r.modules.every((m) => existsSync(join(modulesDir, m)))) return undefined;
    return { vmlinux: join(dir, 'vmlinux'), release: r.release, package: r.package, modules: r.modules, modulesDir };
  } catch {
    return undefined;
  }
}

/** linux-image-amd64 is a meta package: the kernel is the package it depends on. */
async function kernelPackage(): Promise<string> {
  const { stdout } = await run('apt-cache', ['depends', KERNEL_PACKAGE]).catch(() => ({ stdout: '' }));
  const pkg = /Depends:\s*(linux-image-\S+)/.exec(stdout)?.[1];
  if (!pkg) throw failedPrecondition(`apt knows no ${KERNEL_PACKAGE} package: run \`apt-get update\` (the vm backend takes its guest kernel from Debian)`);
  return pkg;
}

/**
 * The bzImage's setup header says where its compressed payload is (setup_sects at 0x1f1,
 * payload_offset at 0x248, payload_length at 0x24c); the payload is the ELF vmlinux.
 */
async function extractVmlinux(xz: string, bzImage: string, out: string): Promise<void> {
  const b = readFileSync(bzImage);
  if (b.readUInt32LE(0x202) !== 0x53726448) throw failedPrecondition(`${bzImage} is not a bzImage (no HdrS signature)`);
  const setupSects = b[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + b.readUInt32LE(0x248);
  const payload = b.subarray(start, start + b.readUInt32LE(0x24c));
  if (!payload.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) {
    throw failedPrecondition(`the kernel payload of ${bzImage} is not xz-compressed`);
  }
  const tmp = `${out}.xz`;
  writeFileSync(tmp, payload);
  // The payload ends with the uncompressed size after the xz stream, which xz reports
  // as trailing garbage: judge by the ELF it wrote, not by its exit status.
  await run('sh', ['-c', '"$0" -dc -- "$1" > "$2" 2>/dev/null; exit 0', xz, tmp, out]);
  rmSync(tmp, { force: true });
  const elf = readFileSync(out);
  const complete = elf.length > 64 && elf.readUInt32BE(0) === 0x7f454c46 && Number(elf.readBigUInt64LE(0x28)) + elf.readUInt16LE(0x3c) * elf.readUInt16LE(0x3a) <= elf.length;
  if (!complete) throw failedPrecondition(`extracting vmlinux from ${bzImage} failed (no complete ELF image)`);
}

interface ModuleFile {
  name: string;
  file: string;
  path: string;
}

const modName = (file: string) => file.replace(/\.ko(\.xz|\.zst|\.gz)?$/, '').replace(/-/g, '_');

function indexModules(dir: string, into = new Map<string, string>()): Map<string, string> {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) indexModules(path, into);
    else if (entry.endsWith('.ko')) into.set(modName(entry), path);
  }
  return into;
}

/** The modinfo "depends=" list of a module file. */
function dependsOf(path: string): string[] {
  const b = readFileSync(path);
  const key = Buffer.from('\0depends=');
  const at = b.indexOf(key);
  if (at < 0) return [];
  const end = b.indexOf(0, at + key.length);
  return b.toString('latin1', at + key.length, end).split(',').filter(Boolean).map(modName);
}

/** The named modules and everything they depend on, dependencies first. */
export function resolveModules(kernelDir: string, wanted: readonly string[]): ModuleFile[] {
  const index = indexModules(kernelDir);
  const order: ModuleFile[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const path = index.get(name);
    if (!path) throw failedPrecondition(`the guest kernel has no module ${name}`);
    for (const dep of dependsOf(path)) visit(dep);
    order.push({ name, file: `${name}.ko`, path });
  };
  for (const name of wanted) visit(name);
  return order;
}
