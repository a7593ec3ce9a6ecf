// The process backend: the same exit reporting and clean shutdown as the namespace
// backend, with the guest as a plain process group.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProcessBackend } from '../../actors/backends/process.js';
import { VcError } from '../../bus/errors.js';
import { alive, incarnation, nextExit, plan, quietLog, readIfExists, sandboxId, sandboxProcesses, spec, tempDir, waitFor } from './helpers.js';

let tmp: { dir: string; remove: () => Promise<void> };
const started: ProcessBackend[] = [];

function backend(graceMs = 2000): ProcessBackend {
  const b = new ProcessBackend({ log: quietLog, graceMs });
  started.push(b);
  return b;
}

beforeAll(async () => {
  tmp = await tempDir('proc');
});

afterEach(async () => {
  await Promise.all(started.splice(0).map((b) => b.shutdown()));
});

afterAll(async () => {
  await tmp?.remove();
});

describe('process backend', () => {
  it('runs the guest in its own session with its output in the run directory', async () => {
    const id = sandboxId('proc-run');
    const runDir = join(tmp.dir, id);
    const b = backend();
    await b.boot({ incarnation: incarnation(), sandbox: spec(id, { backend: 'process' }), runDir, plan: plan(['/bin/sh', '-c', 'echo "hello from $$"; exec sleep 1000']) });
    const pid = b.pid!;
    expect((await readFile(join(runDir, 'guest.pid'), 'utf8')).trim()).toBe(String(pid));
    await waitFor(async () => ((await readIfExists(join(runDir, 'guest.log')))?.includes(`hello from ${pid}`) ? true : undefined), 'the guest output');
    // Its own session and process group: fields 5 and 6 of stat are pgrp and session.
    const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    expect(fields[2]).toBe(String(pid));
    expect(fields[3]).toBe(String(pid));
    expect(await sandboxProcesses(id)).toEqual([pid]);
  });

  it('reports the exit status of a guest that exits on its own', async () => {
    const id = sandboxId('proc-exit');
    const b = backend();
    const { exits, first } = nextExit(b);
    await b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir: join(tmp.dir, id), plan: plan(['/bin/sh', '-c', 'exit 7']) });
    expect(await first).toMatchObject({ status: 7 });
    expect((await first).signal).toBeUndefined();
    await b.shutdown();
    expect(exits).toHaveLength(1);
  });

  it('reports a guest killed from outside as 137 / SIGKILL', async () => {
    const id = sandboxId('proc-kill');
    const b = backend();
    const { first } = nextExit(b);
    await b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir: join(tmp.dir, id), plan: plan(['/bin/sleep', '1000']) });
    process.kill(b.pid!, 'SIGKILL');
    expect(await first).toMatchObject({ status: 137, signal: 'SIGKILL' });
  });

  it('stops the guest and what it started, without reporting an exit, and keeps the log', async () => {
    const id = sandboxId('proc-stop');
    const runDir = join(tmp.dir, id);
    const b = backend(100);
    const { exits } = nextExit(b);
    // The child ignores SIGTERM and outlives its parent's graceful exit.
    const script = 'sh -c \'trap "" TERM; exec sleep 1000\' & trap "exit 0" TERM; while :; do sleep 1000 & wait $!; done';
    await b.boot({ incarnation: incarnation(), sandbox: spec(id), runDir, plan: plan(['/bin/sh', '-c', script]) });
    const pid = b.pid!;
    await waitFor(async () => ((await sandboxProcesses(id)).length >= 3 ? true : undefined), 'the guest children');
    await Promise.all([b.shutdown(), b.shutdown()]);
    expect(alive(pid)).toBe(false);
    expect(await sandboxProcesses(id)).toEqual([]);
    expect(await readIfExists(join(runDir, 'guest.pid'))).toBeUndefined();
    expect((await stat(join(runDir, 'guest.log'))).isFile()).toBe(true);
    expect(exits).toEqual([]);
    expect(b.pid).toBeUndefined();
  });

  it('rejects a guest command that does not exist', async () => {
    const id = sandboxId('proc-bad');
    const err = await backend()
      .boot({ incarnation: incarnation(), sandbox: spec(id), runDir: join(tmp.dir, id), plan: plan(['no-such-guest-binary']) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VcError);
    expect((err as VcError).code).toBe('InvalidArgument');
  });
});
