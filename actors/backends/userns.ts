// User namespaces for namespace sandboxes: the guest and its containers run in a user
// namespace whose root is an unprivileged range of host ids, so that whatever escapes the
// container (and the guest) is nobody on the host: it owns no host file and holds no
// capability over the host's namespaces.
//
// util-linux's unshare maps ranges only through newuidmap (and /etc/subuid); the runtime,
// as root, writes the maps itself instead. The guest chain's first step makes the user
// namespace (`unshare --user --keep-caps`, which keeps the capabilities it holds there
// across the exec) and waits on a pipe; the runtime writes its uid_map and gid_map and
// then lets it go. Its next step makes the sandbox's other namespaces, owned by the user
// namespace, and becomes the namespace's root (`--setuid 0 --setgid 0`). No process is
// added to the chain for this: the wait is the shell the chain runs anyway.
import { execFileSync, type ChildProcess } from 'node:child_process';
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

let unshareCanMap: boolean | undefined;
/** Whether this unshare keeps capabilities across exec and sets ids in the namespace (util-linux 2.35 and later). */
export function unshareEntersMapped(unshare: string): boolean {
  if (unshareCanMap === undefined) {
    try {
      const help = execFileSync(unshare, ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      unshareCanMap = help.includes('--keep-caps') && help.includes('--setuid') && help.includes('--setgid');
    } catch {
      unshareCanMap = false;
    }
  }
  return unshareCanMap;
}

/** The file descriptor on which the chain's first step waits for its maps. */
export const USERNS_GO_FD = 4;

/**
 * The argv prefix that runs `rest` in a new user namespace once its maps are written: it
 * waits for a line on USERNS_GO_FD, closes it, and runs `rest` (an unshare of the other
 * namespaces, which `--setuid 0 --setgid 0` must follow). An end of the pipe without the
 * line (the runtime gone) ends the chain: the guest never runs unmapped.
 */
export function inUserNamespace(unshare: string, sh: string, rest: readonly string[]): string[] {
  const fd = USERNS_GO_FD;
  return [unshare, '--user', '--keep-caps', '--', sh, '-c', `read _ <&${fd} && exec ${fd}<&- && exec "$@"`, 'virtactors-userns', ...rest];
}

/**
 * Writes the maps of the user namespace that the chain's first step made, then lets it go.
 * Throws when the chain ended or did not make it in time; the caller kills the chain.
 */
export async function mapUserNamespace(child: ChildProcess, setting: UserNamespaceSetting): Promise<void> {
  const pid = child.pid;
  const go = child.stdio[USERNS_GO_FD] as NodeJS.WritableStream | null | undefined;
  if (pid === undefined || !go) throw new Error('the guest chain did not start');
  const own = ownUserNs();
  for (let i = 0; ; i++) {
    let ns: string | undefined;
    try {
      ns = readlinkSync(`/proc/${pid}/ns/user`);
    } catch {
      // not yet
    }
    if (ns && ns !== own) break;
    if (child.exitCode !== null || child.signalCode !== null || i > 2000) throw new Error('the guest chain did not make its user namespace');
    await sleep(i < 20 ? 0 : 1);
  }
  const map = `0 ${setting.base} ${setting.size}\n`;
  writeFileSync(`/proc/${pid}/uid_map`, map);
  writeFileSync(`/proc/${pid}/gid_map`, map);
  go.end('\n');
}
