// User namespaces for namespace sandboxes: the guest and its containers run in a user
// namespace whose root is an unprivileged range of host ids, so that whatever escapes the
// container (and the guest) is nobody on the host: it owns no host file and holds no
// capability over the host's namespaces.
//
// util-linux's unshare maps ranges only through newuidmap (and /etc/subuid); the runtime,
// as root, writes the maps itself instead: a holder process makes the user namespace, the
// runtime writes its uid_map and gid_map, and the guest chain enters it with nsenter (which
// becomes its root) before it makes the sandbox's other namespaces, owned by it.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface UserNamespaceSetting {
  enabled: boolean;
  /** First host id that root of the namespace maps to. */
  base: number;
  size: number;
}

/** Default range: 65536 ids from 1610612736 (0x60000000), far above ordinary users and subuid ranges. */
export const DEFAULT_USERNS_BASE = 0x60000000;
export const USERNS_SIZE = 65536;

/** Host settings: VC_USERNS=0 turns user namespaces off; VC_USERNS_BASE moves the range. */
export function usernsSetting(env: NodeJS.ProcessEnv = process.env): UserNamespaceSetting {
  const base = env.VC_USERNS_BASE === undefined ? DEFAULT_USERNS_BASE : Number(env.VC_USERNS_BASE);
  if (!Number.isSafeInteger(base) || base < 65536 || base + USERNS_SIZE > 2 ** 32 - 1) throw new Error('VC_USERNS_BASE must be a host uid of at least 65536, with 65536 ids above it');
  return { enabled: env.VC_USERNS !== '0', base, size: USERNS_SIZE };
}

/** Whether this kernel lets the runtime make user namespaces at all. */
export function kernelAllowsUserNamespaces(): boolean {
  try {
    return Number(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8')) > 0;
  } catch {
    return false;
  }
}

/** Whether an unprivileged host user can reach and read (or run) a file: every directory searchable by others. */
export function reachableByOthers(path: string, self = true): boolean {
  try {
    const mode = statSync(path).mode;
    if (self && (mode & 0o004) === 0 && (mode & 0o001) === 0) return false;
    for (let dir = dirname(path); ; dir = dirname(dir)) {
      if ((statSync(dir).mode & 0o001) === 0) return false;
      if (dir === '/') return true;
    }
  } catch {
    return false;
  }
}

const ownUserNs = () => readlinkSync('/proc/self/ns/user');

/** A user namespace with its maps written, held by a waiting process until released. */
export interface HeldUserNamespace {
  /** The holder's pid: `nsenter --target <pid> --user` enters the namespace. */
  pid: number;
  release(): void;
}

export async function holdUserNamespace(unshare: string, sh: string, setting: UserNamespaceSetting): Promise<HeldUserNamespace> {
  const holder: ChildProcess = spawn(unshare, ['--user', '--', sh, '-c', 'read _'], { stdio: ['pipe', 'ignore', 'ignore'] });
  const release = () => {
    holder.stdin?.destroy();
    holder.kill('SIGKILL');
  };
  try {
    const pid = holder.pid;
    if (pid === undefined) throw new Error('cannot start the user namespace holder');
    const own = ownUserNs();
    for (let i = 0; ; i++) {
      let ns: string | undefined;
      try {
        ns = readlinkSync(`/proc/${pid}/ns/user`);
      } catch {
        // not yet
      }
      if (ns && ns !== own) break;
      if (holder.exitCode !== null || holder.signalCode !== null || i > 2000) throw new Error('the user namespace holder did not start');
      await sleep(i < 20 ? 0 : 1);
    }
    const map = `0 ${setting.base} ${setting.size}\n`;
    writeFileSync(`/proc/${pid}/uid_map`, map);
    writeFileSync(`/proc/${pid}/gid_map`, map);
    return { pid, release };
  } catch (err) {
    release();
    throw err;
  }
}
