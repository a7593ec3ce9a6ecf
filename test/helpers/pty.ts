// A command run on a real pseudo-terminal, as a user at a terminal runs it: util-linux
// `script` (in every Debian, bsdutils) allocates the pty and makes it the controlling
// terminal of a shell that sets the size, notes `stty -g`, runs the command, and notes
// its exit status and `stty -g` again. The test types into the pty through script's
// stdin and changes the pty's size with `stty -F` (the kernel then sends SIGWINCH to the
// foreground process group, the command's).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export interface OnPty {
  child: ChildProcess;
  /** Everything the pty showed so far. */
  output(): string;
  /** Types bytes at the terminal. */
  type(data: string | Buffer): void;
  /** The pty's device (/dev/pts/N), once the shell printed it. */
  device(): Promise<string>;
  /** `stty -g` of the pty now (from outside, while the command runs). */
  modeNow(): Promise<string>;
  /** Sets the pty's size; its foreground process group gets SIGWINCH. */
  resize(rows: number, cols: number): Promise<void>;
  /** Resolves once the command ended: its status, and the pty's mode before and after it. */
  done: Promise<{ status: number; before: string; after: string }>;
}

export function onPty(argv: string[], size: { rows: number; cols: number }, env: NodeJS.ProcessEnv): OnPty {
  const dir = mkdtempSync(join(tmpdir(), 'vc-pty-'));
  const before = join(dir, 'before');
  const after = join(dir, 'after');
  const shell = [
    `stty rows ${size.rows} cols ${size.cols}`,
    'echo "pty=$(tty)"',
    `stty -g > ${quote(before)}`,
    `${argv.map(quote).join(' ')}`,
    'status=$?',
    `stty -g > ${quote(after)}`,
    'echo "command-exit=$status"',
  ].join('; ');
  const child = spawn('script', ['-q', '-e', '-c', shell, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString('latin1')));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString('latin1')));
  const until = async (pred: () => boolean) => {
    while (!pred()) {
      if (child.exitCode !== null) throw new Error(`script ended early: ${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const device = async () => {
    await until(() => /pty=(\/dev\/pts\/\d+)/.test(out));
    return /pty=(\/dev\/pts\/\d+)/.exec(out)![1]!;
  };
  const done = new Promise<{ status: number; before: string; after: string }>((resolve, reject) => {
    child.once('exit', () => {
      const m = /command-exit=(\d+)/.exec(out);
      if (!m) return reject(new Error(`the command's status is missing: ${out}`));
      resolve({ status: Number(m[1]), before: readFileSync(before, 'utf8').trim(), after: readFileSync(after, 'utf8').trim() });
    });
  });
  return {
    child,
    output: () => out,
    type: (data) => child.stdin!.write(data),
    device,
    modeNow: async () => execFileSync('stty', ['-g', '-F', await device()], { encoding: 'utf8' }).trim(),
    resize: async (rows, cols) => void execFileSync('stty', ['-F', await device(), 'rows', String(rows), 'cols', String(cols)]),
    done,
  };
}
