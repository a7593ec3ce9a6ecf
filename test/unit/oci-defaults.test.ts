// The confinement written into every bundle, checked as data: what the escape probes then
// check from inside real containers.
import { describe, expect, it } from 'vitest';
import { DEFAULT_CAPABILITIES, defaultSeccomp, guestCapabilities, MASKED_PATHS, READONLY_PATHS } from '../../guest/common/oci/defaults.js';
import { relaxationsIn } from '../../guest/common/oci/relaxations.js';
import { ociConfig } from '../../guest/common/oci/spec.js';
import { confinementOf } from '../../guest/kata-agent/convert.js';
import { hybridUnifiedMount, namedHierarchies } from '../../guest/common/oci/runtime.js';

const input = (privileged: boolean) =>
  ociConfig({
    privileged,
    process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['true'], env: [], cwd: '/' },
    root: { path: '/r', readonly: true },
    hostname: 'h',
    guestMounts: [],
  });

describe('the default confinement', () => {
  it("is Docker's default capability set, and nothing more", () => {
    expect([...DEFAULT_CAPABILITIES].sort()).toEqual(
      ['CAP_AUDIT_WRITE', 'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_MKNOD', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW', 'CAP_SETFCAP', 'CAP_SETGID', 'CAP_SETPCAP', 'CAP_SETUID', 'CAP_SYS_CHROOT'],
    );
    const { process } = input(false);
    expect(process.capabilities.effective).toEqual([...DEFAULT_CAPABILITIES]);
    expect(process.capabilities.ambient).toEqual([]);
    expect(process.noNewPrivileges).toBe(true);
  });

  it('refuses the dangerous system calls with EPERM and allows the rest', () => {
    const profile = defaultSeccomp();
    expect(profile.defaultAction).toBe('SCMP_ACT_ALLOW');
    const refused = new Set(profile.syscalls.filter((r) => !r.args && r.errnoRet === 1).flatMap((r) => r.names));
    for (const call of ['mount', 'umount2', 'pivot_root', 'open_by_handle_at', 'init_module', 'finit_module', 'delete_module', 'kexec_load', 'kexec_file_load', 'bpf', 'perf_event_open', 'ptrace', 'process_vm_writev', 'add_key', 'request_key', 'keyctl', 'reboot', 'swapon', 'settimeofday', 'unshare', 'setns', 'userfaultfd', 'fsopen']) {
      expect(refused, call).toContain(call);
    }
    for (const call of ['read', 'write', 'clone', 'execve', 'kill', 'chown']) expect(refused, call).not.toContain(call);
    // clone only with a namespace flag; clone3 looks absent.
    const cloneRules = profile.syscalls.filter((r) => r.names.includes('clone'));
    expect(cloneRules.every((r) => r.args?.length === 1 && r.args[0]!.op === 'SCMP_CMP_MASKED_EQ')).toBe(true);
    expect(cloneRules.map((r) => r.args![0]!.value).reduce((a, b) => a | b, 0)).toBe(0x7e020000);
    expect(profile.syscalls.find((r) => r.names.includes('clone3'))?.errnoRet).toBe(38);
  });

  it('masks and write-protects /proc and /sys, and gives the container its own pid, mount, ipc and uts namespaces', () => {
    const config = input(false);
    expect(config.linux.maskedPaths).toEqual(MASKED_PATHS);
    expect(config.linux.readonlyPaths).toEqual(READONLY_PATHS);
    expect(config.linux.maskedPaths).toContain('/proc/kcore');
    expect(config.linux.readonlyPaths).toContain('/proc/sys');
    expect(config.linux.namespaces.map((n) => n.type).sort()).toEqual(['ipc', 'mount', 'pid', 'uts']);
    expect(config.mounts.find((m) => m.destination === '/sys')?.options).toContain('ro');
  });

  it('is relaxed only for a privileged container', () => {
    const config = input(true);
    expect(config.linux.seccomp).toBeUndefined();
    expect(config.linux.maskedPaths).toBeUndefined();
    expect(config.process.noNewPrivileges).toBe(false);
    expect(config.process.capabilities.effective).toEqual(guestCapabilities());
    expect(guestCapabilities('CapBnd:\t0000000000000021\n')).toEqual(['CAP_CHOWN', 'CAP_KILL']);
  });
});

describe('what a received OCI spec may ask for', () => {
  it('asks for nothing when it names the defaults and the standard mounts', () => {
    expect(
      relaxationsIn({
        Process: { Capabilities: { Bounding: [...DEFAULT_CAPABILITIES], Effective: ['CAP_KILL'] } },
        Mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }, { destination: '/dev', type: 'tmpfs' }, { destination: '/sys/fs/cgroup', type: 'cgroup' }],
        Linux: { Namespaces: [{ Type: 'pid' }, { Type: 'mount' }] },
      }),
    ).toEqual([]);
  });

  it('is refused more capabilities, other mounts and namespaces to join, unless the runtime marked it privileged', () => {
    const spec = {
      Process: { Capabilities: { Bounding: ['CAP_SYS_ADMIN'] } },
      Mounts: [{ destination: '/host', type: 'bind', source: '/' }],
      Linux: { Namespaces: [{ Type: 'net', Path: '/proc/1/ns/net' }] },
    };
    expect(relaxationsIn(spec)).toEqual(['capability CAP_SYS_ADMIN', 'mount of / on /host', 'joining the net namespace at /proc/1/ns/net']);
    expect(() => confinementOf(spec)).toThrow(/only a privileged container gets: capability CAP_SYS_ADMIN/);
    expect(confinementOf({ ...spec, Annotations: { 'io.virtactors.privileged': 'true' } })).toBe(true);
    expect(confinementOf({})).toBe(false);
  });
});

describe('the hybrid cgroup layout crun refuses', () => {
  const line = (id: number, dir: string, type: string) => `${id} 1 0:${id} / ${dir} rw - ${type} ${type} rw`;
  it('is seen where a cgroup2 mount sits beside v1 controllers, and not once something covers it', () => {
    const hybrid = [line(30, '/sys/fs/cgroup/memory', 'cgroup'), line(31, '/sys/fs/cgroup/unified', 'cgroup2')];
    expect(hybridUnifiedMount(hybrid.join('\n'))).toBe('/sys/fs/cgroup/unified');
    expect(hybridUnifiedMount([...hybrid, line(40, '/sys/fs/cgroup/unified', 'tmpfs')].join('\n'))).toBeUndefined();
    expect(hybridUnifiedMount(line(31, '/sys/fs/cgroup', 'cgroup2'))).toBeUndefined();
  });
});

describe('the named cgroup hierarchies runc runs without', () => {
  const mount = (id: number, dir: string, fstype: string, options: string) => `${id} 23 0:${id} / ${dir} rw,relatime - ${fstype} ${fstype === 'tmpfs' ? 'tmpfs' : 'cgroup'} ${options}`;
  const host = [
    mount(31, '/sys/fs/cgroup', 'tmpfs', 'rw,mode=755'),
    mount(32, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'),
    mount(33, '/sys/fs/cgroup/systemd', 'cgroup', 'rw,xattr,name=systemd'),
    mount(34, '/sys/fs/cgroup/unified', 'cgroup2', 'rw'),
  ].join('\n');

  it('are the v1 hierarchies without a controller, outside a user namespace', () => {
    expect(namedHierarchies(host, false)).toEqual(['/sys/fs/cgroup/systemd']);
  });

  it('are none in a user namespace, where the host mounts are locked (and not writable)', () => {
    expect(namedHierarchies(host, true)).toEqual([]);
  });
});
