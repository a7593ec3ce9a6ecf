// The local end of `-t`, as `docker run -it` has it: at a terminal our stdin goes raw for
// as long as the remote process runs (keys such as Ctrl-C reach it through its terminal,
// not us), and is always put back, whatever ends the command; our terminal's size goes
// along at the start and again on every SIGWINCH. Without a terminal here nothing is put
// in raw mode: the remote process still gets one.
import { execFileSync } from 'node:child_process';
import type { ReadStream, WriteStream } from 'node:tty';
import type { VcClient } from '../bus/client.js';
import type * as Bus from '../bus/messages.gen.js';

/** Our terminal's size, from whichever of stdout and stderr is one; undefined when neither is. */
export function localSize(): Bus.ConsoleSize | undefined {
  const out = [process.stdout, process.stderr].find((s) => s.isTTY && s.columns > 0 && s.rows > 0) as WriteStream | undefined;
  return out ? { rows: out.rows, cols: out.columns } : undefined;
}

/** Whether `-t` here means raw keys: our stdin is a terminal. */
export const stdinIsTerminal = (): boolean => !!(process.stdin as ReadStream).isTTY;

/**
 * Puts our stdin in raw mode when it is a terminal; returns what puts it back (safe to
 * call twice). The mode is restored at process exit too, so an error or process.exit on
 * any path leaves the terminal as it was.
 */
export function rawMode(stdin: ReadStream = process.stdin as ReadStream): () => void {
  if (!stdin.isTTY) return () => {};
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    process.off('exit', restore);
    if (!stdin.destroyed) stdin.setRawMode(false);
  };
  stdin.setRawMode(true);
  // Node's raw mode keeps output post-processing (\n becomes \r\n): the remote terminal
  // already did that, and full-screen programs send bare \n, so it goes too, as in
  // cfmakeraw. Putting the mode back (setRawMode(false)) restores what Node saved.
  try {
    execFileSync('stty', ['-opost'], { stdio: ['inherit', 'ignore', 'ignore'] });
  } catch {
    // No stty here: raw all the same, with \r\n for \n.
  }
  process.on('exit', restore);
  return restore;
}

/**
 * Resizes the remote terminal whenever ours changes (Node reads the new size on SIGWINCH
 * and emits 'resize'), one request at a time, the latest size last. `sent` is the size
 * the process started with: a change since then is sent at once. Returns what stops it.
 */
export function forwardResize(client: VcClient, sid: string, cid: string, execId: string | undefined, sent: Bus.ConsoleSize | undefined): () => void {
  let stopped = false;
  let chain: Promise<unknown> = Promise.resolve();
  let last = sent;
  const push = () => {
    const size = localSize();
    if (!size || (last && last.rows === size.rows && last.cols === size.cols)) return;
    last = size;
    const body: Bus.ContainerResizeRequest = { rows: size.rows, cols: size.cols };
    if (execId) body.execId = execId;
    chain = chain.then(() => (stopped ? undefined : client.call('ContainerResize', { sid, cid }, body))).catch((err: Error) => {
      // The process may have just ended; anything else is worth a line.
      if (!stopped) process.stderr.write(`virtactors: resize: ${err.message}\r\n`);
    });
  };
  const streams = [process.stdout, process.stderr].filter((s) => s.isTTY);
  for (const s of streams) s.on('resize', push);
  push();
  return () => {
    stopped = true;
    for (const s of streams) s.off('resize', push);
  };
}
