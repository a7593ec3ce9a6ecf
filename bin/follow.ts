// Following a process to its end, as `docker run` and `docker exec` do: its stdout and
// stderr copied to ours while it runs, then its exit status. Output comes from the
// runtime's log of the process (`logs` from a byte offset on), read until the process
// exited and nothing more is there, so nothing written before the exit is missed.
import { CommandError, type VcClient } from '../bus/client.js';
import { ErrorCode } from '../bus/errors.js';
import type * as Bus from '../bus/messages.gen.js';

export interface Followed {
  exitStatus: number;
  exitStatusUnknown: boolean;
  reason?: string;
  message?: string;
}

/** How long one wait request waits before it is asked again (long-running processes). */
const WAIT_SLICE_MS = 30_000;
/** Output is looked for at this pace while the process runs, backing off while it is quiet. */
const POLL_MIN_MS = 20;
const POLL_MAX_MS = 250;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function follow(
  client: VcClient,
  sid: string,
  cid: string,
  execId: string | undefined,
  out: { stdout: (s: string) => void; stderr: (s: string) => void },
): Promise<Followed> {
  let exited: Bus.WaitReply | undefined;
  let failed: unknown;
  void (async () => {
    for (;;) {
      try {
        const body: Bus.ContainerWaitRequest = { timeoutMs: WAIT_SLICE_MS };
        if (execId) body.execId = execId;
        exited = await client.call('ContainerWait', { sid, cid }, body, { timeoutMs: WAIT_SLICE_MS + 10_000 });
        return;
      } catch (err) {
        if (err instanceof CommandError && err.code === ErrorCode.DeadlineExceeded) continue;
        failed = err;
        return;
      }
    }
  })();

  const offsets = { stdoutOffset: 0, stderrOffset: 0 };
  let pause = POLL_MIN_MS;
  for (;;) {
    // Read after seeing the exit, so the last read comes after the last write.
    const done = exited !== undefined || failed !== undefined;
    const body: Bus.ContainerLogsRequest = { ...offsets };
    if (execId) body.execId = execId;
    const got = await client.call('ContainerLogs', { sid, cid }, body);
    if (got.stdout) out.stdout(got.stdout);
    if (got.stderr) out.stderr(got.stderr);
    const moved = (got.stdoutEnd ?? 0) !== offsets.stdoutOffset || (got.stderrEnd ?? 0) !== offsets.stderrOffset;
    offsets.stdoutOffset = got.stdoutEnd ?? 0;
    offsets.stderrOffset = got.stderrEnd ?? 0;
    if (done && !moved) break;
    if (moved) pause = POLL_MIN_MS;
    else {
      await sleep(pause);
      pause = Math.min(POLL_MAX_MS, pause * 2);
    }
  }
  if (failed) throw failed;
  const e = exited!;
  return { exitStatus: e.exitStatus ?? 0, exitStatusUnknown: !!e.exitStatusUnknown, reason: e.reason, message: e.message };
}

/**
 * Copies our stdin to a running process's, in order, and closes its stdin at our end of
 * input (`-i`). The returned function stops copying (the process exited).
 */
export function forwardStdin(client: VcClient, sid: string, cid: string, execId: string | undefined, input: NodeJS.ReadableStream = process.stdin): () => void {
  let chain: Promise<unknown> = Promise.resolve();
  let stopped = false;
  const send = (body: Bus.ContainerStdinRequest) => {
    if (execId) body.execId = execId;
    chain = chain.then(() => (stopped ? undefined : client.call('ContainerStdin', { sid, cid }, body))).catch((err: Error) => {
      if (!stopped) process.stderr.write(`virtactors: stdin: ${err.message}\n`);
      stopped = true;
    });
  };
  const onData = (chunk: Buffer) => send({ data: chunk.toString('base64') });
  const onEnd = () => send({ close: true });
  input.on('data', onData);
  input.once('end', onEnd);
  return () => {
    stopped = true;
    input.off('data', onData);
    input.off('end', onEnd);
    (input as NodeJS.ReadStream).pause?.();
    (input as NodeJS.ReadStream).destroy?.();
  };
}
