// Bundles on disk: one directory per container with its config.json, exec process files,
// and the minimal default root filesystem a container without one of its own gets.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { OciConfig, OciMount, OciProcess } from './spec.js';
import type { ContainerHelpers } from './runtime.js';

/** Where the guest's static helpers appear inside every container: /dev is the container's own tmpfs, so no rootfs is touched. */
export const HELPER_DIR = '/dev/.virtactors';
export const GATE_SHELL = `${HELPER_DIR}/busybox`;
export const CONTAINER_INIT = `${HELPER_DIR}/init`;

/** Read-only bind mounts of the helpers. */
export function helperMounts(helpers: ContainerHelpers): OciMount[] {
  const ro = ['bind', 'ro', 'nosuid', 'nodev'];
  return [
    { destination: GATE_SHELL, type: 'bind', source: helpers.busybox, options: ro },
    { destination: CONTAINER_INIT, type: 'bind', source: helpers.init, options: ro },
  ];
}

/**
 * The container's init process, held at a gate until it is started: a static shell waits for
 * one line on fd 3, closes it, and execs tini with exactly the process's environment (through
 * `env -i`, so that the shell adds nothing of its own). tini runs the program as its child,
 * forwards every signal to it, reaps orphans, and exits with the program's status.
 */
export function gatedInit(program: string, args: readonly string[], env: readonly string[], withInit = true): string[] {
  const script = `read -r _ <&3 || exit 125; exec 3<&-; exec ${GATE_SHELL} env -i "$@"`;
  // Without an init of its own (a container in a stock hyperstart pod's pid namespace) the
  // program is the container's first process, as there, and the pod's init reaps.
  return [GATE_SHELL, 'sh', '-c', script, 'va-gate', '--', ...env, ...(withInit ? [CONTAINER_INIT, '--'] : []), program, ...args];
}

function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}

export class Bundles {
  private defaultRoot: string | undefined;

  constructor(
    /** The guest's state directory (0700), removed with the guest. */
    private readonly dir: string,
    private readonly helpers: ContainerHelpers,
  ) {}

  bundleDir(containerId: string): string {
    return join(this.dir, 'bundles', containerId);
  }

  /** Writes config.json; returns the bundle directory. */
  write(containerId: string, config: OciConfig): string {
    const dir = this.bundleDir(containerId);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeAtomically(join(dir, 'config.json'), JSON.stringify(config));
    return dir;
  }

  /** Writes the process.json of an exec; returns its path. */
  writeProcess(containerId: string, execId: string, process: OciProcess): string {
    const path = join(this.bundleDir(containerId), `exec-${execId}.json`);
    writeAtomically(path, JSON.stringify(process));
    return path;
  }

  removeProcess(containerId: string, execId: string): void {
    rmSync(join(this.bundleDir(containerId), `exec-${execId}.json`), { force: true });
  }

  remove(containerId: string): void {
    rmSync(this.bundleDir(containerId), { recursive: true, force: true });
  }

  /**
   * The minimal default root filesystem: busybox and its applets, an /etc with root and
   * nobody, and empty mount points. Built once per guest; containers get it read-only (with
   * a tmpfs /tmp), so they share it without seeing each other's writes.
   */
  defaultRootfs(): string {
    if (this.defaultRoot) return this.defaultRoot;
    const root = join(this.dir, 'rootfs');
    if (!existsSync(join(root, '.complete'))) {
      const building = `${root}.building`;
      rmSync(building, { recursive: true, force: true });
      for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'root', 'tmp', 'proc', 'sys', 'dev', 'home', 'var']) mkdirSync(join(building, d), { recursive: true });
      copyFileSync(this.helpers.busybox, join(building, 'bin/busybox'));
      chmodSync(join(building, 'bin/busybox'), 0o755);
      const applets = execFileSync(this.helpers.busybox, ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean);
      for (const applet of applets) {
        if (applet === 'bin/busybox' || applet.includes('..')) continue;
        const target = join(building, applet);
        mkdirSync(dirname(target), { recursive: true });
        if (!existsSync(target)) symlinkSync('/bin/busybox', target);
      }
      writeFileSync(join(building, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
      writeFileSync(join(building, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
      writeFileSync(join(building, 'etc/hostname'), '');
      chmodSync(join(building, 'tmp'), 0o1777);
      writeFileSync(join(building, '.complete'), '');
      rmSync(root, { recursive: true, force: true });
      renameSync(building, root);
    }
    this.defaultRoot = root;
    return root;
  }
}
