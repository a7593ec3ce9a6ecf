// The guest chain's first step makes its user namespace and waits for the runtime to
// write the maps: it must run nothing unmapped, and run the rest as the namespace's root.
import { spawn, type ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { inUserNamespace, mapUserNamespace, unshareEntersMapped, USERNS_GO_FD, DEFAULT_USERNS_BASE, USERNS_SIZE } from '../../actors/backends/userns.js';
import { isRoot } from './helpers.js';

const UNSHARE = '/usr/bin/unshare';
const SH = '/bin/sh';

function chain(rest: string[]): { child: ChildProcess; output: Promise<{ out: string; code: number | null }> } {
  const stdio: ('ignore' | 'pipe')[] = ['ignore', 'pipe', 'pipe', 'ignore'];
  stdio[USERNS_GO_FD] = 'pipe';
  const [file, ...argv] = inUserNamespace(UNSHARE, SH, rest);
  const child = spawn(file!, argv, { stdio });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: new Promise((resolve) => child.on('close', (code) => resolve({ out, code }))) };
}

const rest = [UNSHARE, '--setuid', '0', '--setgid', '0', '--uts', '--', SH, '-c', 'echo ran; cat /proc/self/uid_map; id -u'];

// Making a user namespace with another range needs root, and util-linux 2.35 or later.
const skip = !isRoot ? 'needs root' : !unshareEntersMapped(UNSHARE) ? 'this unshare has no --keep-caps or --setuid' : undefined;

describe.skipIf(skip !== undefined)(`the user namespace step of the guest chain${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('runs the rest as root of a namespace mapped to the range, once the maps are written', async () => {
    const { child, output } = chain(rest);
    await mapUserNamespace(child, { enabled: true, base: DEFAULT_USERNS_BASE, size: USERNS_SIZE });
    const { out, code } = await output;
    expect(code).toBe(0);
    expect(out).toContain('ran');
    expect(out).toMatch(new RegExp(`^\\s*0\\s+${DEFAULT_USERNS_BASE}\\s+${USERNS_SIZE}$`, 'm'));
    expect(out.trim().split('\n').at(-1)).toBe('0');
  });

  it('runs nothing when the pipe ends without the go (the runtime gone before the maps)', async () => {
    // A rest that would run unmapped (no --setuid, which an unmapped namespace refuses).
    const { child, output } = chain([SH, '-c', 'echo ran']);
    (child.stdio[USERNS_GO_FD] as NodeJS.WritableStream).end();
    const { out, code } = await output;
    expect(code).not.toBe(0);
    expect(out).not.toContain('ran');
  });
});
