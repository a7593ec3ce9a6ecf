// What both guest backends share: the files a guest leaves in its run directory, the
// marker that names its sandbox, exit statuses, and liveness checks by pid.
import { accessSync, chmodSync, constants, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { lstat, readdir, readFile, rm, unlink } from 'node:fs/promises';
import { constants as os } from 'node:os';
import { isAlive } from '../processes.js';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { invalidArgument } from '../../bus/errors.js';
import type { GuestEndpoint, GuestPlan } from '../agents/agent.js';
import type { GuestExit } from './backend.js';

/** Set in the guest's environment so that its processes can be found by sandbox. */
export const SANDBOX_ENV = 'VIRTACTORS_SANDBOX';
export const GUEST_LOG = 'guest.log';
export const GUEST_PID = 'guest.pid';

export const logPath = (runDir: string) => join(runDir, GUEST_LOG);
export const pidPath = (runDir: string) => join(runDir, GUEST_PID);

// The boot path uses synchronous calls for these few small files: each takes
// microseconds, far less than a thread-pool round trip.

/**
 * Creates the run directory (0700: the sockets in it reach the guest agent, so nobody but
 * the runtime may even look) and opens the guest's log (stdout and stderr) for appending.
 */
export function openGuestLog(runDir: string): number {
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  chmodSync(runDir, 0o700);
  return openSync(logPath(runDir), 'a', 0o600);
}

/** Written whole or not at all, for whoever reattaches to the guest later. */
export function writePidFile(runDir: string, pid: number): void {
  const tmp = `${pidPath(runDir)}.tmp`;
  try {
    writeFileSync(tmp, `${pid}\n`);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  renameSync(tmp, pidPath(runDir));
}

/** The pid the pid file names, when there is one. */
export function readPidFile(runDir: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(pidPath(runDir), 'utf8'), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Whether pid is a live (not zombie) process carrying the sandbox's marker in its environment. */
export function isSandboxGuest(pid: number, sandboxId: string): boolean {
  if (!isAlive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`${SANDBOX_ENV}=${sandboxId}`);
  } catch {
    return false;
  }
}

/** The last lines of the guest's log, for error messages. */
export async function logTail(runDir: string, lines = 5): Promise<string> {
  const text = await readFile(logPath(runDir), 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Unix socket paths named by an endpoint (grpc "unix:" addresses included). */
export function endpointSockets(endpoint: GuestEndpoint): string[] {
  const paths = [endpoint.ctlSocket, endpoint.ttySocket];
  const grpc = endpoint.grpcAddress;
  if (grpc?.startsWith('unix:')) paths.push(grpc.replace(/^unix:(\/\/)?/, ''));
  return paths.filter((p): p is string => !!p);
}

/**
 * Removes what a stopped guest leaves behind; its log stays for whoever reads it. Only the
 * runtime's own pid file and the guest's sockets directly in the run directory are removed,
 * and a socket only when it still is one: nothing else is ever unlinked.
 */
export async function removeGuestFiles(runDir: string, endpoint: GuestEndpoint): Promise<void> {
  await rm(pidPath(runDir), { force: true });
  for (const path of endpointSockets(endpoint)) await removeSocketIn(runDir, path);
}

/** Unlinks `path` when it is a unix socket directly inside `dir`; anything else stays. */
export async function removeSocketIn(dir: string, path: string): Promise<boolean> {
  if (resolve(dirname(path)) !== resolve(dir)) return false;
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isSocket()) return false;
  await unlink(path).catch(() => {});
  return true;
}

export function guestExit(code: number | null, signal: NodeJS.Signals | null): GuestExit {
  const at = new Date().toISOString();
  if (signal) return { status: 128 + (os.signals[signal] ?? 0), signal, at };
  return { status: code ?? 255, at };
}

/** Sends a signal; false when the target is already gone. */
export function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Live (not zombie) members of a process group, found through /proc. */
export async function groupMembers(pgid: number): Promise<number[]> {
  const members: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // Fields after the parenthesised command: state, ppid, pgrp.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') members.push(Number(entry));
  }
  return members;
}

/** Polls until a process group has no live member; zombies left to another reaper do not count. */
export async function waitGroupGone(pgid: number, timeoutMs: number): Promise<boolean> {
  for (let waited = 0; (await groupMembers(pgid)).length > 0; waited += 5) {
    if (waited >= timeoutMs) return false;
    await sleep(5);
  }
  return true;
}

/** Checks the plan before anything is started, so that a bad one fails the boot clearly. */
export function checkPlan(plan: GuestPlan): void {
  if (plan.command.length === 0 || !plan.command[0]) throw invalidArgument('the agent gave no guest command to run');
  const exe = plan.command[0];
  if (!isAbsolute(exe) && exe.includes('/')) throw invalidArgument(`guest command ${exe}: use an absolute path or a name found in the guest PATH`);
  const candidates = isAbsolute(exe) ? [exe] : (plan.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, exe));
  const found = candidates.some((path) => {
    try {
      accessSync(path, constants.X_OK);
      return statSync(path).isFile();
    } catch {
      return false;
    }
  });
  if (!found) throw invalidArgument(`guest command ${exe} is not an executable${isAbsolute(exe) ? '' : ' in the guest PATH'}`);
}

/** The guest's environment: the plan's, plus the sandbox marker. */
export function guestEnvironment(plan: GuestPlan, sandboxId: string): Record<string, string> {
  return { ...plan.env, [SANDBOX_ENV]: sandboxId };
}
