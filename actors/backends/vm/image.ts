// The guest image: an initramfs built from what the host has — busybox and tini (static), node,
// crun, the util-linux and procps tools the guest supervisor runs, the shared libraries
// they need (as ldd names them), our guest agents' bundles — plus the kernel's modules
// and /init. Nothing of the host's filesystem is visible in the VM beyond these copies.
// Built once per set of inputs and cached; a missing piece is named with its package.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { failedPrecondition } from '../../../bus/errors.js';
import { guestEntry } from '../../guest-binaries.js';
import { writeCpio, type CpioEntry } from './cpio.js';
import { GUEST_ROOT, initScript } from './init-script.js';
import type { GuestKernel } from './kernel.js';
import { requireProgram } from './tools.js';

const run = promisify(execFile);
/** Bumped when the image layout changes without any input changing. */
const IMAGE_FORMAT = 4;

/** Dynamically linked programs copied into /usr/bin with their libraries. */
const PROGRAMS: { name: string; why: string }[] = [
  { name: 'crun', why: 'to run containers inside the VM' },
  { name: 'unshare', why: 'in the guest image (container root and pid namespaces)' },
  { name: 'nsenter', why: 'in the guest image (the reaping pid namespace)' },
  { name: 'script', why: 'in the guest image (terminals)' },
  { name: 'stty', why: 'in the guest image (terminal sizes)' },
  { name: 'ps', why: 'in the guest image (process lists)' },
];

export interface GuestImage {
  initramfs: string;
  kernel: GuestKernel;
}

interface Inputs {
  busybox: string;
  /** tini-static: each container's init inside the VM, as on the host (guest/common/oci). */
  tini: string;
  node: string;
  programs: Map<string, string>;
  guests: { name: string; path: string }[];
}

function gatherInputs(): Inputs {
  const busybox = requireProgram('busybox', 'as the guest image shell and tools');
  const tini = requireProgram('tini-static', 'as the init of containers in the guest image (Debian: tini)');
  const node = process.execPath;
  const programs = new Map(PROGRAMS.map((p) => [p.name, requireProgram(p.name, p.why)]));
  const guests = (['kata-agent', 'hyperstart'] as const).map((name) => ({ name, path: guestEntry(name) }));
  return { busybox, tini, node, programs, guests };
}

/** ldd's answer: the libraries (and the loader) a dynamic program needs. */
async function libraries(program: string): Promise<string[]> {
  const ldd = requireProgram('ldd', 'to find the libraries of the guest programs');
  const { stdout } = await run(ldd, [program]).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  if (/not a dynamic executable|statically linked/.test(stdout)) return [];
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
    else if (/=>\s*not found/.test(line)) throw failedPrecondition(`${program} needs ${line.trim()}: the guest image cannot be built`);
  }
  return libs;
}

const fileStamp = (path: string) => {
  const st = statSync(path);
  return `${path}:${st.size}:${st.mtimeMs}`;
};

/** The image for these inputs, built first when the cache has none. */
export async function prepareImage(cacheDir: string, kernel: GuestKernel, log: Logger): Promise<GuestImage> {
  const inputs = gatherInputs();
  const staticBusybox = (await libraries(inputs.busybox)).length === 0;
  if (!staticBusybox) throw failedPrecondition(`${inputs.busybox} is linked dynamically: the guest image needs busybox-static`);
  if ((await libraries(inputs.tini)).length > 0) throw failedPrecondition(`${inputs.tini} is linked dynamically: the guest image needs tini-static`);
  const programs = [inputs.node, ...inputs.programs.values()];
  const libs = [...new Set((await Promise.all(programs.map(libraries))).flat())];
  const script = initScript(kernel.modules);

  const hash = createHash('sha256').update(`format ${IMAGE_FORMAT}\n${script}\n${kernel.release}\n`);
  for (const path of [inputs.busybox, inputs.tini, ...programs, ...libs]) hash.update(`${fileStamp(path)}\n`);
  for (const g of inputs.guests) hash.update(readFileSync(g.path));
  const key = hash.digest('hex').slice(0, 16);
  const dir = join(cacheDir, 'image');
  const initramfs = join(dir, `initramfs-${key}.cpio`);
  if (existsSync(initramfs)) return { initramfs, kernel };

  const started = performance.now();
  log.info({ initramfs }, 'vm: building the guest image from this host (busybox, node, crun, guest agents)');
  mkdirSync(dir, { recursive: true });
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  const mkdirs = (path: string) => {
    const parts = path.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        entries.push({ path: d, kind: 'dir', mode: d === 'tmp' ? 0o1777 : 0o755 });
      }
    }
  };
  const file = (path: string, source: string, mode = 0o755) => {
    mkdirs(path.slice(0, path.lastIndexOf('/')));
    entries.push({ path, kind: 'file', source: realpathSync(source), mode });
  };
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'proc', 'sys', 'dev', 'run', 'tmp', 'root', 'lib/modules']) mkdirs(d);
  file('bin/busybox', inputs.busybox);
  const { stdout: applets } = await run(inputs.busybox, ['--list']);
  for (const applet of applets.split('\n').filter((a) => a && a !== 'busybox')) entries.push({ path: `bin/${applet}`, kind: 'symlink', target: 'busybox' });
  file('usr/bin/tini-static', inputs.tini);
  file('usr/bin/node', inputs.node);
  for (const [name, path] of inputs.programs) file(`usr/bin/${name}`, path);
  // The loader among them is executed by the kernel: libraries keep their usual 0755.
  for (const lib of libs) file(lib.slice(1), lib, 0o755);
  for (const g of inputs.guests) file(`${GUEST_ROOT.slice(1)}/${g.name}/main.js`, g.path, 0o644);
  for (const m of kernel.modules) file(`lib/modules/${m}`, join(kernel.modulesDir, m), 0o644);
  entries.push(
    { path: 'etc/passwd', kind: 'data', data: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' },
    { path: 'etc/group', kind: 'data', data: 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' },
    { path: 'etc/hosts', kind: 'data', data: '127.0.0.1 localhost\n::1 localhost\n' },
    { path: 'init', kind: 'data', data: script, mode: 0o755 },
  );
  // Written aside and renamed: another runtime preparing the same image at the same time
  // (or a VM booting from it) never sees half a file.
  const partial = `${initramfs}.${process.pid}.partial`;
  writeCpio(partial, entries);
  renameSync(partial, initramfs);
  // Older images of this cache are the runtime's own files: only the current one is kept
  // (a qemu still booting from one keeps its open file).
  for (const old of readdirSync(dir)) {
    if (/^initramfs-[0-9a-f]+\.cpio$/.test(old) && old !== `initramfs-${key}.cpio`) rmSync(join(dir, old), { force: true });
  }
  log.info({ initramfs, ms: Math.round(performance.now() - started), bytes: statSync(initramfs).size }, 'vm: guest image ready');
  return { initramfs, kernel };
}
