// Builds dist/ once before the suites (the CLI and the guest agents run from there), and
// gives the run a temporary directory of its own: every suite's temporary files (rootfs,
// bundles, run directories) go below it through TMPDIR, and it is removed after the run,
// so a test that leaves something behind leaves it in a directory that goes.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Mount points at or below `dir` (a test that failed may leave one): never removed through. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((p): p is string => !!p && (p === dir || p.startsWith(`${dir}/`)));
}

export default function setup(): () => void {
  execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
  const dir = mkdtempSync(join(tmpdir(), 'vc-test-'));
  // Guests in user namespaces run as unprivileged host users: they must traverse it.
  chmodSync(dir, 0o755);
  process.env.TMPDIR = dir;
  return () => {
    const mounts = mountsUnder(dir);
    if (mounts.length > 0) {
      process.stderr.write(`test run: ${dir} kept: mounts left under it: ${mounts.join(', ')}\n`);
      return;
    }
    rmSync(dir, { recursive: true, force: true });
  };
}
