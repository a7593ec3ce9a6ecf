// The confinement every container gets unless it is explicitly privileged: the defaults
// Docker and containerd give a container, written down here from the kernel's facts.
import { readFileSync } from 'node:fs';

/**
 * Docker's default capability set: enough to run ordinary programs as root (own files,
 * switch users, bind low ports, chroot, raw sockets for ping), nothing that reaches the
 * kernel or other processes (no SYS_ADMIN, SYS_MODULE, SYS_PTRACE, SYS_BOOT, NET_ADMIN, BPF...).
 */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
] as const;

/** Every capability this kernel generation knows, by bit number (0..40). */
export const ALL_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK',
  'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE',
  'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
] as const;

/** What a privileged container gets: every capability the guest itself may still hold (its bounding set). */
export function guestCapabilities(status = readFileSync('/proc/self/status', 'utf8')): string[] {
  const hex = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (!hex) return [...ALL_CAPABILITIES];
  const bounding = BigInt(`0x${hex}`);
  return ALL_CAPABILITIES.filter((_, bit) => ((bounding >> BigInt(bit)) & 1n) === 1n);
}

/** /proc and /sys entries that leak host facts or reach hardware: hidden (an empty file or directory over them). */
export const MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/sys/devices/virtual/powercap',
  '/sys/firmware',
];

/** /proc entries that tune the kernel as a whole: visible but read-only. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export interface SeccompRule {
  names: string[];
  action: 'SCMP_ACT_ERRNO';
  errnoRet: number;
  args?: { index: number; value: number; valueTwo: number; op: 'SCMP_CMP_MASKED_EQ' }[];
}

export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ALLOW';
  architectures: string[];
  syscalls: SeccompRule[];
}

const EPERM = 1;
const ENOSYS = 38;

/**
 * System calls a container never needs and that act on the kernel or on the machine as a
 * whole rather than on the container's own processes. Most of them also need a capability
 * the container lacks; the filter holds even where a capability check has a hole. Grouped
 * by what they would reach.
 */
const REFUSED: Record<string, string[]> = {
  // Filesystems: mounting, remounting, changing the root, reaching files by handle (which bypasses the mount view).
  mounts: ['mount', 'umount', 'umount2', 'pivot_root', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount', 'open_tree', 'mount_setattr', 'name_to_handle_at', 'open_by_handle_at'],
  // Kernel code: loading and removing modules, replacing the running kernel.
  modules: ['init_module', 'finit_module', 'delete_module', 'create_module', 'query_module', 'get_kernel_syms', 'kexec_load', 'kexec_file_load'],
  // Programs run inside the kernel, and kernel-wide tracing.
  bpf: ['bpf', 'perf_event_open', 'lookup_dcookie'],
  // Other processes' memory and state.
  ptrace: ['ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd'],
  // The kernel keyring is not namespaced: keys would be shared with the host.
  keyring: ['add_key', 'request_key', 'keyctl'],
  // The machine: power, clocks, swap, accounting, quotas, raw I/O ports, old vm86 mode.
  machine: ['reboot', 'swapon', 'swapoff', 'acct', 'quotactl', 'quotactl_fd', 'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex', 'stime', 'ioperm', 'iopl', 'vm86', 'vm86old', 'nfsservctl', '_sysctl', 'sysfs', 'ustat', 'uselib', 'syslog'],
  // Memory placement across NUMA nodes, and page-fault handling in user space (a kernel exploit aid).
  memory: ['mbind', 'set_mempolicy', 'get_mempolicy', 'move_pages', 'migrate_pages', 'userfaultfd'],
  // New namespaces, or joining others: the container keeps the ones it was given.
  namespaces: ['unshare', 'setns'],
};

/** clone flags that make new namespaces (mount, cgroup, uts, ipc, user, pid, net). */
const CLONE_NAMESPACE_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];

/** The default seccomp filter: everything allowed except the calls above (EPERM). */
export function defaultSeccomp(): SeccompProfile {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
    syscalls: [
      { names: Object.values(REFUSED).flat(), action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      // clone with any namespace flag; clone3 passes its flags in memory a filter cannot read,
      // so it looks absent (ENOSYS) and the C library falls back to clone.
      ...CLONE_NAMESPACE_FLAGS.map((flag) => ({
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO' as const,
        errnoRet: EPERM,
        args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' as const }],
      })),
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    ],
  };
}

/** The refused system calls, for documentation and tests. */
export const REFUSED_SYSCALLS: Readonly<Record<string, readonly string[]>> = REFUSED;
