// A host that stops answering while its process and its NATS connection live on
// (SIGSTOP: it even keeps its place in the hosts' queue group), then one killed outright
// (kill -9). Long before it would be counted lost (a minute here), every command about
// its sandbox answers Unavailable naming it, whichever host the command reaches; the
// other host's sandboxes keep being served, also for commands the queue group handed
// to the stopped host; and the stopped host, once continued, serves again without
// carrying out what it was sent meanwhile. No clock in the test: the client's timeout
// is far above the expected answer (about a second), so a hang shows as
// DeadlineExceeded, not as Unavailable.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandError, type VcClient } from '../../bus/client.js';
import { encode } from '../../bus/codec.js';
import { subjectOf, type CommandName, type CommandParams, type CommandRequest } from '../../bus/commands.js';
import { subjects } from '../../bus/subjects.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import { connectClient, hostAuth, startTestHost, type TestHost } from '../helpers/runtime.js';
import { startHostProcess, type HostProcess } from '../helpers/host-process.js';
import { waitFor } from '../backends/helpers.js';

const LOST_AFTER_MS = 60_000;
/** Far above the expected answer: a command left waiting ends as DeadlineExceeded. */
const TIMEOUT_MS = 20_000;

let server: TestServer;
let alpha: TestHost;
let beta: HostProcess;
let client: VcClient;
let stateDir: string;
/** Whether this test stopped beta and has not continued it yet. */
let stopped = false;

beforeAll(async () => {
  server = await startTestServer();
  client = await connectClient(server.url, server.auth!.operator);
  alpha = await startTestHost(server.url, { host: 'alpha', ...hostAuth(server), hostLostAfterMs: LOST_AFTER_MS });
  stateDir = mkdtempSync(join(tmpdir(), 'vc-stall-'));
  beta = await startHostProcess(client, {
    servers: server.url,
    host: 'beta',
    stateDir,
    creds: server.auth!.host,
    env: { VC_HOST_LOST_AFTER_MS: String(LOST_AFTER_MS), VC_METRICS_ADDR: 'off' },
  });
}, 60_000);

afterAll(async () => {
  if (stopped && beta) process.kill(beta.pid, 'SIGCONT');
  await beta?.kill9();
  await client?.close();
  await alpha?.stop();
  await server?.dispose();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

const opts = { timeoutMs: TIMEOUT_MS };
const outcome = (p: Promise<unknown>) => p.then(() => 'ok', (err: CommandError) => `${err.code}: ${err.message}`);

/** A command sent to alpha itself (as a client's second try is), not to the queue group. */
async function viaAlpha<C extends CommandName>(name: C, params: CommandParams<C>, request: CommandRequest<C> = {} as CommandRequest<C>): Promise<string> {
  const reply = await client.requestSubject(subjects.hostVia('alpha', subjectOf(name, params)), encode(request), opts);
  return reply.ok ? 'ok' : `${reply.error?.code}: ${reply.error?.message}`;
}

/** Every kind of command about a sandbox: its status, a change of its state, a container's. */
const aboutB1 = [
  ['SandboxStatus', { sid: 'b1' }],
  ['SandboxStop', { sid: 'b1' }],
  ['ContainerStop', { sid: 'b1', cid: 'c1' }],
  ['ContainerExec', { sid: 'b1', cid: 'c1' }, { args: ['true'] }],
] as const;

describe('a stopped owner host (SIGSTOP), then a dead one (kill -9)', () => {
  it('answers Unavailable for its sandbox at once, keeps serving the other host, and serves again when continued', async () => {
    for (const [host, sid] of [['beta', 'b1'], ['alpha', 'a1']] as const) {
      await client.call('HostSandboxCreate', { host }, { sandbox: { id: sid }, start: true });
      await client.call('ContainerCreate', { sid }, { container: { id: 'c1', args: ['sleep', '300'] } });
      await client.call('ContainerStart', { sid, cid: 'c1' });
    }
    const b1Before = (await client.call('SandboxStatus', { sid: 'b1' })).sandbox;
    expect(b1Before).toMatchObject({ host: 'beta', state: 'running' });
    const b1EventsBefore = (await eventsOf('b1')).length;

    process.kill(beta.pid, 'SIGSTOP');
    stopped = true;

    // The other host's sandbox, through the queue group (some of these land on the
    // stopped host, whose connection still takes its share): each is carried out once.
    for (let i = 0; i < 3; i++) {
      expect(await outcome(client.call('ContainerStop', { sid: 'a1', cid: 'c1' }, undefined, opts))).toBe('ok');
      expect(await outcome(client.call('ContainerStart', { sid: 'a1', cid: 'c1' }, undefined, opts))).toBe('ok');
      expect((await client.call('SandboxStatus', { sid: 'a1' }, undefined, opts)).sandbox).toMatchObject({ state: 'running' });
    }

    // Sent to the healthy host: it forwards, gets no receipt, answers Unavailable naming
    // beta and when it last heard from it.
    for (const [name, params, request] of aboutB1) {
      expect(await viaAlpha(name, params, request)).toMatch(/^Unavailable: sandbox b1 cannot be reached: host beta (did not take the command|is not connected).*last heartbeat was seen at \d{4}-\d\d-\d\dT/);
    }
    // Through the queue group, whichever host it hands them to.
    for (let i = 0; i < 2; i++) {
      for (const [name, params, request] of aboutB1) {
        expect(await outcome(client.call(name, params as never, request as never, opts))).toMatch(/^Unavailable: sandbox b1 cannot be reached: host beta /);
      }
    }

    process.kill(beta.pid, 'SIGCONT');
    stopped = false;
    // beta serves b1 again (it may first reconnect: the server dropped it for missed pings).
    const b1 = await waitFor(async () => {
      const r = await client.request('SandboxStatus', { sid: 'b1' }, undefined, { timeoutMs: 5_000 }).catch(() => undefined);
      return r?.ok ? r.sandbox : undefined;
    }, 'beta to serve b1 again', 30_000);
    // Nothing it was sent while stopped was carried out late: b1 and its container still
    // run, b1 has no new event, and a1's container was stopped exactly as often as asked.
    expect(b1).toMatchObject({ host: 'beta', state: 'running' });
    expect((await client.call('ContainerStatus', { sid: 'b1', cid: 'c1' })).container).toMatchObject({ state: 'running' });
    expect(await eventsOf('b1')).toHaveLength(b1EventsBefore);
    expect((await client.call('ContainerStatus', { sid: 'a1', cid: 'c1' })).container).toMatchObject({ state: 'running' });
    const a1Stops = (await eventsOf('a1')).filter((e) => e.containerId === 'c1' && !e.execId && e.type === 'exit');
    expect(a1Stops).toHaveLength(3);
    // And it is beta's again to change.
    expect(await outcome(client.call('ContainerStop', { sid: 'b1', cid: 'c1' }, undefined, opts))).toBe('ok');

    // Dead: its connection is gone, so nobody takes the forward and the answer is at once.
    await beta.kill9();
    for (const [name, params, request] of aboutB1) {
      expect(await viaAlpha(name, params, request)).toMatch(/^Unavailable: sandbox b1 cannot be reached: host beta is not connected to NATS/);
      expect(await outcome(client.call(name, params as never, request as never, opts))).toMatch(/^Unavailable: sandbox b1 cannot be reached: host beta is not connected to NATS/);
    }
    // The healthy host's sandbox is not touched by any of it.
    expect((await client.call('SandboxStatus', { sid: 'a1' })).sandbox).toMatchObject({ host: 'alpha', state: 'running' });
    await client.call('SandboxDelete', { sid: 'a1' }, { force: true });
  }, 120_000);
});

async function eventsOf(sandboxId: string) {
  const out = [];
  for await (const e of client.events({ sandboxId })) out.push(e.event);
  return out;
}
