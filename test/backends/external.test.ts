// The external backend against guests this test starts and owns itself, as another tool
// would start a VM: the runtime only dials the endpoint, under a directory the host
// allows, never unlinks it, and learns of the guest's death through its agent check.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, VcError } from '../../bus/errors.js';
import type * as Bus from '../../bus/messages.gen.js';
import { ExternalBackend } from '../../actors/backends/external.js';
import type { BootRequest } from '../../actors/backends/backend.js';
import type { SandboxSpec } from '../../machines/specs.js';
import { useRuntime } from '../helpers/runtime.js';

const silent = pino({ level: 'silent' });
const attachDir = mkdtempSync(join(tmpdir(), 'vc-attach-'));
const outside = mkdtempSync(join(tmpdir(), 'vc-outside-'));
const rt = useRuntime({ host: 'ext', attachDirs: [attachDir] });

afterAll(() => {
  rmSync(attachDir, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

/** A unix socket something else listens on. */
async function listen(path: string): Promise<Server> {
  const server = createServer((s) => s.destroy());
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

/** A boot of sandbox s1 attaching where `endpoint` says (as its spec's attach). */
const bootRequest = (endpoint: BootRequest['plan']['endpoint'], runDir = join(outside, 'run', 's1')): BootRequest => ({
  sandbox: {
    id: 's1',
    agent: endpoint.grpcAddress ? 'kata' : 'hyperstart',
    attach: { grpcSocket: endpoint.grpcAddress ?? '', ctlSocket: endpoint.ctlSocket ?? '', ttySocket: endpoint.ttySocket ?? '' },
  } as SandboxSpec,
  incarnation: { host: 'test', uid: '0' },
  runDir,
  plan: { endpoint: {}, command: [], env: {} },
});

async function refusal(p: Promise<unknown>): Promise<VcError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(VcError);
  return err as VcError;
}

describe('external backend: which endpoints it attaches to', () => {
  const servers: Server[] = [];
  let inside: string;
  beforeAll(async () => {
    inside = join(attachDir, 'unit.sock');
    servers.push(await listen(inside), await listen(join(outside, 'foreign.sock')));
    symlinkSync(join(outside, 'foreign.sock'), join(attachDir, 'escape.sock'));
    writeFileSync(join(attachDir, 'plain-file'), '');
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });

  it('is off until the host allows a directory', async () => {
    const err = await refusal(new ExternalBackend({ log: silent, attachDirs: [] }).boot(bootRequest({ grpcAddress: `unix://${inside}` })));
    expect(err.code).toBe(ErrorCode.FailedPrecondition);
    expect(err.message).toMatch(/VC_ATTACH_DIRS/);
  });

  it('attaches under an allowed directory, answering canonical paths, and leaves the socket when it shuts down', async () => {
    const viaLink = join(outside, 'link-to-attach');
    symlinkSync(attachDir, viaLink);
    const backend = new ExternalBackend({ log: silent, attachDirs: [viaLink] });
    let exits = 0;
    backend.onExit(() => exits++);
    expect(await backend.boot(bootRequest({ grpcAddress: `unix://${inside}` }))).toEqual({ grpcAddress: `unix://${realpathSync(inside)}` });
    expect(await backend.boot(bootRequest({ ctlSocket: inside, ttySocket: inside }))).toEqual({ ctlSocket: realpathSync(inside), ttySocket: realpathSync(inside) });
    expect(backend.pid).toBeUndefined();
    await backend.shutdown();
    expect(existsSync(inside)).toBe(true);
    expect(exits).toBe(0);
  });

  it('refuses endpoints outside, through "..", through a symlink out, over tcp, missing, not a socket, or in its run directories', async () => {
    const backend = new ExternalBackend({ log: silent, attachDirs: [attachDir] });
    const cases: Array<[BootRequest, ErrorCode, RegExp]> = [
      [bootRequest({ grpcAddress: `unix://${join(outside, 'foreign.sock')}` }), ErrorCode.InvalidArgument, /not under a directory this host allows/],
      [bootRequest({ grpcAddress: `unix://${attachDir}/../${outside.split('/').pop()}/foreign.sock` }), ErrorCode.InvalidArgument, /no "\.\."/],
      [bootRequest({ grpcAddress: `unix://${join(attachDir, 'escape.sock')}` }), ErrorCode.InvalidArgument, /resolves to/],
      [bootRequest({ grpcAddress: 'tcp://127.0.0.1:1' }), ErrorCode.InvalidArgument, /only unix sockets/],
      [bootRequest({ grpcAddress: 'relative/kata.sock' }), ErrorCode.InvalidArgument, /absolute path/],
      [bootRequest({ grpcAddress: `unix://${join(attachDir, 'nothing.sock')}` }), ErrorCode.Unavailable, /does not exist/],
      [bootRequest({ ctlSocket: join(attachDir, 'plain-file'), ttySocket: inside }), ErrorCode.InvalidArgument, /not a unix socket/],
      [bootRequest({ ctlSocket: inside }), ErrorCode.InvalidArgument, /names no endpoint/],
      [bootRequest({ grpcAddress: `unix://${inside}` }, join(attachDir, 's1')), ErrorCode.InvalidArgument, /run directories/],
    ];
    for (const [request, code, message] of cases) {
      const err = await refusal(backend.boot(request));
      expect([err.code, err.message]).toEqual([code, expect.stringMatching(message)]);
    }
  });
});

// ---- through the bus, against real guests this test owns --------------------------------

interface OwnGuest {
  child: ChildProcess;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

function startOwnGuest(args: string[]): OwnGuest {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'ignore'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    exited,
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}

async function nextEvent(sid: string, match: (e: Bus.Event) => boolean, timeoutMs = 15_000): Promise<Bus.Event> {
  const events = rt.client.events({ sandboxId: sid, follow: true });
  const timer = setTimeout(() => void events.return(undefined), timeoutMs);
  try {
    for await (const e of events) if (match(e.event)) return e.event;
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`no matching event for ${sid}`);
}

describe('external backend through the bus', () => {
  const kataMain = join(process.cwd(), 'dist/guest/kata-agent/main.js');
  const hyperMain = join(process.cwd(), 'dist/guest/hyperstart/main.js');

  it('refuses an endpoint outside the allowed directories; nothing is left of the sandbox', async () => {
    const reply = await rt.client.request('SandboxCreate', {}, {
      sandbox: { id: 'ext-out', agent: 'kata', backend: 'external', attach: { grpcSocket: `unix://${join(outside, 'kata.sock')}` } },
      start: true,
    });
    expect(reply.error).toMatchObject({ code: 'InvalidArgument', message: expect.stringMatching(/not under a directory this host allows/) });
    const list = await rt.ok('SandboxList', {}, {});
    expect(list.sandboxes?.map((s) => s.id)).not.toContain('ext-out');
  });

  it('runs a kata container on a guest it did not start, and leaves guest and socket to their owner', async () => {
    const dir = join(attachDir, 'kata-1');
    mkdirSync(dir);
    const socket = join(dir, 'agent.sock');
    const guest = startOwnGuest([kataMain, '--listen', `unix://${socket}`]);
    try {
      await until(() => existsSync(socket));
      const created = await rt.ok('SandboxCreate', {}, {
        sandbox: {
          id: 'ext-kata', agent: 'kata', backend: 'external', attach: { grpcSocket: `unix://${socket}` },
          containers: [{ id: 'c1', args: ['sh', '-c', 'echo attached; exit 4'] }],
        },
        start: true,
      });
      expect(created.sandbox).toMatchObject({ state: 'running', backend: 'external' });
      expect(await rt.ok('ContainerWait', { sid: 'ext-kata', cid: 'c1' }, { timeoutMs: 20_000 })).toMatchObject({ exitStatus: 4 });
      expect((await rt.ok('ContainerLogs', { sid: 'ext-kata', cid: 'c1' })).stdout).toBe('attached\n');
      await rt.ok('SandboxDelete', { sid: 'ext-kata' }, { force: true });
      // The guest is its owner's: still running, its socket still there.
      expect(guest.child.exitCode).toBeNull();
      expect(existsSync(socket)).toBe(true);
    } finally {
      await guest.kill();
    }
  });

  it("fails the sandbox when the guest dies, found by the agent check alone, and unlinks nothing", async () => {
    const dir = join(attachDir, 'kata-2');
    mkdirSync(dir);
    const socket = join(dir, 'agent.sock');
    const guest = startOwnGuest([kataMain, '--listen', `unix://${socket}`]);
    try {
      await until(() => existsSync(socket));
      await rt.ok('SandboxCreate', {}, {
        sandbox: {
          id: 'ext-dies', agent: 'kata', backend: 'external', attach: { grpcSocket: `unix://${socket}` },
          monitor: { intervalMs: 100, deadlineMs: 300 },
          containers: [{ id: 'web', args: ['sleep', '60'] }],
        },
        start: true,
      });
      const failed = nextEvent('ext-dies', (e) => e.type === 'fail');
      // SIGKILL: the guest cannot clean up; its socket file stays behind, stale.
      await guest.kill('SIGKILL');
      expect(await failed).toMatchObject({ state: 'failed', reason: 'agent-unreachable' });
      const exit = await nextEvent('ext-dies', (e) => e.type === 'exit' && e.containerId === 'web');
      expect(exit).toMatchObject({ exitStatus: 255, exitStatusUnknown: true });
      await rt.ok('SandboxDelete', { sid: 'ext-dies' }, { force: true });
      expect(existsSync(socket)).toBe(true);
    } finally {
      await guest.kill();
    }
  });

  it('attaches to a stock hyperstart: its unknown pids and signal deaths say unknown in replies, status and events', async () => {
    const dir = join(attachDir, 'hyper-1');
    mkdirSync(dir);
    const ctl = join(dir, 'ctl.sock');
    const tty = join(dir, 'tty.sock');
    const guest = startOwnGuest([hyperMain, '--ctl', ctl, '--tty', tty, '--stock']);
    try {
      await until(() => existsSync(ctl) && existsSync(tty));
      await rt.ok('SandboxCreate', {}, {
        sandbox: {
          id: 'ext-hyper', agent: 'hyperstart', backend: 'external', attach: { ctlSocket: ctl, ttySocket: tty },
          containers: [{ id: 'box', args: ['sleep', '60'] }],
        },
        start: true,
      });
      const status = await rt.ok('ContainerStatus', { sid: 'ext-hyper', cid: 'box' });
      expect(status.container).toMatchObject({ state: 'running', pid: 0, pidUnknown: true });
      const exec = await rt.ok('ContainerExec', { sid: 'ext-hyper', cid: 'box' }, { execId: 'e1', args: ['sh', '-c', 'exit 6'] });
      expect(exec).toMatchObject({ execId: 'e1', pid: 0, pidUnknown: true });
      expect(await rt.ok('ContainerWait', { sid: 'ext-hyper', cid: 'box' }, { execId: 'e1', timeoutMs: 20_000 })).toMatchObject({ exitStatus: 6 });
      const stats = await rt.client.request('ContainerStats', { sid: 'ext-hyper', cid: 'box' });
      expect(stats.error).toMatchObject({ code: 'Unimplemented' });
      await rt.ok('ContainerKill', { sid: 'ext-hyper', cid: 'box' }, { signal: 15 });
      const wait = await rt.ok('ContainerWait', { sid: 'ext-hyper', cid: 'box' }, { timeoutMs: 20_000 });
      expect(wait).toMatchObject({ exitStatus: 255, exitStatusUnknown: true });
      const after = await rt.ok('ContainerStatus', { sid: 'ext-hyper', cid: 'box' });
      expect(after.container).toMatchObject({ state: 'stopped', exitStatus: 255, hasExitStatus: true, exitStatusUnknown: true });
      await rt.ok('SandboxDelete', { sid: 'ext-hyper' }, { force: true });
      const events = await rt.eventsOf('ext-hyper');
      const start = events.find((e) => e.type === 'start' && e.containerId === 'box');
      expect(start).toMatchObject({ pid: 0, pidUnknown: true });
      expect(events.find((e) => e.type === 'exec-started' && e.execId === 'e1')).toMatchObject({ pidUnknown: true });
      expect(events.find((e) => e.type === 'exit' && e.execId === 'e1')).toMatchObject({ exitStatus: 6 });
      expect(events.find((e) => e.type === 'exit' && e.execId === 'e1')?.exitStatusUnknown).toBeUndefined();
      expect(events.find((e) => e.type === 'exit' && !e.execId && e.containerId === 'box')).toMatchObject({ exitStatus: 255, exitStatusUnknown: true });
      // DESTROYPOD powered the guest off; it took its own sockets along.
      expect(await guest.exited).toBe(0);
    } finally {
      await guest.kill();
    }
  });
});
