// qemu for the guest VMs: the machine type (microvm, or q35 where this qemu has none),
// the accelerator (KVM only where /dev/kvm boots a stock kernel, else TCG), and the
// command line of one VM. microvm's devices are virtio-mmio; q35's are virtio-pci.
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { failedPrecondition } from '../../../bus/errors.js';
import type { GuestImage } from './image.js';
import { requireProgram } from './tools.js';

const run = promisify(execFile);
export type Machine = 'microvm' | 'q35';
export type Accel = 'kvm' | 'tcg';
const PROBE_TIMEOUT_MS = 20_000;

export interface QemuSetup {
  binary: string;
  machine: Machine;
  accel: Accel;
  /** tsc_early_khz for TCG guests: the host's clock, so that a busy host's guest does not hang calibrating. */
  tscKhz?: number;
}

function hostTscKhz(): number | undefined {
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
  return mhz ? Math.round(Number(mhz) * 1000) : undefined;
}

async function machineOf(binary: string): Promise<Machine> {
  const wanted = process.env.VC_VM_MACHINE;
  if (wanted && wanted !== 'microvm' && wanted !== 'q35') throw failedPrecondition(`VC_VM_MACHINE=${wanted}: use microvm or q35`);
  if (wanted) return wanted as Machine;
  const { stdout } = await run(binary, ['-machine', 'help']);
  return /^microvm\s/m.test(stdout) ? 'microvm' : 'q35';
}

const kvmUsable = () => {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
};

/**
 * Whether KVM boots our kernel: /dev/kvm may be there and still fail every stock kernel
 * (a PVM host). Asked once per host kernel and guest kernel, by booting the guest with
 * `virtactors.probe=1` (its /init reports and powers off); the answer is cached.
 */
async function accelOf(binary: string, machine: Machine, image: GuestImage, cacheDir: string, log: Logger): Promise<Accel> {
  const wanted = process.env.VC_VM_ACCEL;
  if (wanted && wanted !== 'kvm' && wanted !== 'tcg') throw failedPrecondition(`VC_VM_ACCEL=${wanted}: use kvm or tcg`);
  if (wanted) return wanted as Accel;
  if (!kvmUsable()) return 'tcg';
  const file = join(cacheDir, 'accel.json');
  const key = `${release()} ${image.kernel.release} ${machine}`;
  try {
    const cached = JSON.parse(readFileSync(file, 'utf8')) as { key: string; accel: Accel };
    if (cached.key === key) return cached.accel;
  } catch {
    // not asked yet
  }
  log.info('vm: checking whether KVM on this host boots a stock kernel');
  const accel: Accel = (await probeKvm(binary, machine, image)) ? 'kvm' : 'tcg';
  log.info({ accel }, accel === 'kvm' ? 'vm: KVM works, VMs use it' : 'vm: KVM does not boot a stock kernel here, VMs run under TCG');
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(file, `${JSON.stringify({ key, accel })}\n`);
  return accel;
}

function probeKvm(binary: string, machine: Machine, image: GuestImage): Promise<boolean> {
  const args = [
    ...machineArgs(machine, 'kvm'),
    '-m', '256', '-smp', '1', '-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none', '-serial', 'stdio',
    '-kernel', image.kernel.vmlinux, '-initrd', image.initramfs,
    '-append', 'console=ttyS0 quiet panic=-1 virtactors.probe=1',
  ];
  return new Promise((resolve) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('virtactors-probe-ok')) child.kill('SIGKILL');
    });
    child.once('error', () => resolve(false));
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(out.includes('virtactors-probe-ok'));
    });
  });
}

function machineArgs(machine: Machine, accel: Accel): string[] {
  const cpu = accel === 'kvm' ? 'host' : 'max';
  // TCG's translation cache may grow to 1 GiB of host memory by default; a guest agent needs far less.
  const acc = accel === 'tcg' ? 'tcg,tb-size=64' : accel;
  // microvm's RTC on: the guest starts with the real date, not 1970, and boots faster
  // under TCG (measured here: 8.6–9.2 s to an answering agent with it off, 6.7–7.2 s on).
  if (machine === 'microvm') return ['-machine', 'microvm,x-option-roms=off,rtc=on,isa-serial=on', '-accel', acc, '-cpu', cpu];
  return ['-machine', 'q35', '-accel', acc, '-cpu', cpu];
}

export async function qemuSetup(image: GuestImage, cacheDir: string, log: Logger): Promise<QemuSetup> {
  const binary = requireProgram('qemu-system-x86_64', 'to run virtual machines');
  const machine = await machineOf(binary);
  const accel = await accelOf(binary, machine, image, cacheDir, log);
  return { binary, machine, accel, ...(accel === 'tcg' ? { tscKhz: hostTscKhz() } : {}) };
}

export interface VmLayout {
  agent: 'kata' | 'hyperstart';
  memoryMiB: number;
  cpus: number;
  /** Host directory exported over 9p, and its mount tag. */
  shareDir: string;
  shareTag: string;
  /** qemu's end of each virtio-serial port: a unix socket qemu listens on. */
  ports: { name: string; socket: string }[];
  console: string;
}

/** qemu option values separate with commas; a comma inside one is doubled. */
const esc = (value: string) => value.replace(/,/g, ',,');

/** The qemu command line of one VM. */
export function qemuArgs(setup: QemuSetup, image: GuestImage, vm: VmLayout): string[] {
  const mmio = setup.machine === 'microvm';
  const append = ['console=ttyS0', 'quiet', 'panic=-1', `virtactors.agent=${vm.agent}`, `virtactors.share=${vm.shareTag}`, `virtactors.accel=${setup.accel}`];
  // Under TCG the guest's TSC is qemu's virtual clock, steady; but the kernel's watchdog
  // compares it with jiffies, which a slow TCG guest loses, and falls back to jiffies:
  // 4 ms timers and a tick that never stops (an idle VM then used 4–5 % of a host core,
  // 0.8 % with the TSC kept).
  if (setup.tscKhz) append.push(`tsc_early_khz=${setup.tscKhz}`, 'tsc=reliable');
  const args = [
    ...machineArgs(setup.machine, setup.accel),
    '-m', String(vm.memoryMiB), '-smp', String(vm.cpus),
    '-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none', '-monitor', 'none',
    '-kernel', image.kernel.vmlinux, '-initrd', image.initramfs, '-append', append.join(' '),
    '-chardev', `file,id=console,path=${esc(vm.console)}`, '-serial', 'chardev:console',
    '-device', mmio ? 'virtio-serial-device' : 'virtio-serial-pci',
  ];
  vm.ports.forEach((p, i) => {
    args.push('-chardev', `socket,id=port${i},path=${esc(p.socket)},server=on,wait=off`);
    args.push('-device', `virtserialport,chardev=port${i},name=${p.name}`);
  });
  args.push(
    '-fsdev', `local,id=share,path=${esc(vm.shareDir)},security_model=passthrough,multidevs=remap`,
    '-device', `${mmio ? 'virtio-9p-device' : 'virtio-9p-pci'},fsdev=share,mount_tag=${vm.shareTag}`,
  );
  return args;
}
