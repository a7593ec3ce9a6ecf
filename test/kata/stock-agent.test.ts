// Our kata guest agent in its stock mode (--stock) reproduces what the stock kata agent
// 1.x was observed to do (reference §10), at the protocol level: each fact below is what
// a host driving a stock agent must cope with.
import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { grpcTarget } from '../../actors/agents/kata-client.js';
import type { AgentRequest } from '../../actors/agents/kata-client.js';
import { agentService, type AgentMethod } from '../../protos/kata/index.js';
import { containerRequest, eventually, startGuest, type Guest } from './helpers.js';
import { STANDARD_MOUNTS } from '../../actors/agents/kata-spec.js';
import { busyboxApplets, busyboxRootfs } from '../helpers/rootfs.js';
import { alive } from '../helpers/processes.js';
import { rmSync } from 'node:fs';

// A real container root (what a host sends a stock agent, which has no default): busybox.
let rootfs = '';
beforeAll(() => {
  rootfs = busyboxRootfs('', busyboxApplets());
});
afterAll(() => rmSync(rootfs, { recursive: true, force: true }));

const T = 5000;

/** One call on a fresh channel, answering with the raw gRPC status (code and message) and the trailers. */
async function raw<M extends AgentMethod>(address: string, method: M, request: AgentRequest<M>): Promise<{ code: status; details: string; trailers: Metadata }> {
  const client = new Client(grpcTarget(address), credentials.createInsecure());
  const def = agentService[method];
  try {
    return await new Promise((resolve) => {
      let err: ServiceError | null = null;
      const call = client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, request, new Metadata(), { deadline: Date.now() + T }, (e) => {
        err = e;
      });
      call.on('status', (s) => resolve({ code: err ? err.code : s.code, details: err ? err.details : s.details, trailers: s.metadata }));
    });
  } finally {
    client.close();
  }
}

/**
 * The spec the stock agent needs: Linux with Resources and namespaces, the standard mounts
 * (those at `mounts`; all of them by default), an existing root.
 */
function completeRequest(id: string, args: string[], mounts = STANDARD_MOUNTS.map((m) => m.destination!)): AgentRequest<'CreateContainer'> {
  const req = containerRequest(id, args, { root: rootfs });
  req.OCI!.Linux = { Resources: {}, Namespaces: [{ Type: 'mount' }, { Type: 'ipc' }, { Type: 'uts' }, { Type: 'pid' }] };
  req.OCI!.Mounts = STANDARD_MOUNTS.filter((m) => mounts.includes(m.destination!)).map((m) => ({ ...m, options: [...(m.options ?? [])] }));
  return req;
}

describe('kata guest agent, stock mode', () => {
  let guest: Guest;
  beforeAll(async () => {
    guest = await startGuest({ flags: ['--stock'] });
    expect(guest.stderr()).toContain('"stock":true');
    await guest.conn.call('CreateSandbox', { hostname: 'stock', sandbox_id: 'stock' }, T);
  });
  afterAll(() => guest?.stop());

  const run = async (id: string, args: string[], mounts?: string[]) => {
    await guest.conn.call('CreateContainer', completeRequest(id, args, mounts), T);
    return raw(guest.address, 'StartContainer', { container_id: id });
  };
  const pids = async (id: string) =>
    JSON.parse(Buffer.from((await guest.conn.call('ListProcesses', { container_id: id, format: 'json', args: [] }, T)).response.process_list!).toString()) as number[];
  const remove = (id: string) => guest.conn.call('RemoveContainer', { container_id: id, timeout: 0 }, T);

  it('answers a second CreateSandbox with AlreadyExists', async () => {
    expect((await raw(guest.address, 'CreateSandbox', { hostname: 'again', sandbox_id: 'again' })).code).toBe(status.ALREADY_EXISTS);
  });

  it('puts no pid in any reply: the pids are in ListProcesses', async () => {
    const started = await run('nopid', ['sleep', '60']);
    expect(started.code).toBe(status.OK);
    expect(started.trailers.get('x-virtactors-pid')).toEqual([]);
    const exec = await raw(guest.address, 'ExecProcess', { container_id: 'nopid', exec_id: 'e1', process: { Args: ['sleep', '61'], Env: [], Cwd: '/' } });
    expect(exec.code).toBe(status.OK);
    expect(exec.trailers.get('x-virtactors-pid')).toEqual([]);
    expect(await pids('nopid')).toHaveLength(2);
    await remove('nopid');
  });

  it('ends ReadStdout and ReadStderr with a gRPC error whose message is EOF', async () => {
    await run('eof', ['sh', '-c', 'echo out; echo err >&2']);
    const first = await raw(guest.address, 'ReadStdout', { container_id: 'eof', exec_id: 'eof', len: 1024 });
    expect(first.code).toBe(status.OK);
    expect(await raw(guest.address, 'ReadStderr', { container_id: 'eof', exec_id: 'eof', len: 1024 })).toMatchObject({ code: status.OK });
    expect(await raw(guest.address, 'ReadStdout', { container_id: 'eof', exec_id: 'eof', len: 1024 })).toMatchObject({ code: status.UNKNOWN, details: 'EOF' });
    expect(await raw(guest.address, 'ReadStderr', { container_id: 'eof', exec_id: 'eof', len: 1024 })).toMatchObject({ code: status.UNKNOWN, details: 'EOF' });
    await remove('eof');
  });

  it('turns SIGTERM for an init without a handler into SIGKILL (137); a handler still runs; an exec gets SIGTERM', async () => {
    await run('plain', ['sleep', '60']);
    await guest.conn.call('SignalProcess', { container_id: 'plain', exec_id: 'plain', signal: 15 }, T);
    expect((await guest.conn.call('WaitProcess', { container_id: 'plain', exec_id: 'plain' })).response.status).toBe(137);
    await remove('plain');

    await run('handler', ['sh', '-c', 'trap "exit 9" TERM; echo armed; while :; do sleep 0.05; done']);
    expect(Buffer.from((await guest.conn.call('ReadStdout', { container_id: 'handler', exec_id: 'handler', len: 64 }, T)).response.data!).toString()).toBe('armed\n');
    await guest.conn.call('SignalProcess', { container_id: 'handler', exec_id: 'handler', signal: 15 }, T);
    expect((await guest.conn.call('WaitProcess', { container_id: 'handler', exec_id: 'handler' })).response.status).toBe(9);
    await remove('handler');

    await run('host', ['sleep', '60']);
    await guest.conn.call('ExecProcess', { container_id: 'host', exec_id: 'side', process: { Args: ['sleep', '61'], Env: [], Cwd: '/' } }, T);
    await guest.conn.call('SignalProcess', { container_id: 'host', exec_id: 'side', signal: 15 }, T);
    expect((await guest.conn.call('WaitProcess', { container_id: 'host', exec_id: 'side' })).response.status).toBe(143);
    await remove('host');
  });

  it('answers a second PauseContainer with code Unknown "container not running or created: paused"', async () => {
    await run('pause', ['sleep', '60']);
    expect((await raw(guest.address, 'ResumeContainer', { container_id: 'pause' })).code).toBe(status.UNKNOWN);
    await guest.conn.call('PauseContainer', { container_id: 'pause' }, T);
    expect(await raw(guest.address, 'PauseContainer', { container_id: 'pause' })).toMatchObject({ code: status.UNKNOWN, details: 'container not running or created: paused' });
    await guest.conn.call('ResumeContainer', { container_id: 'pause' }, T);
    expect(await raw(guest.address, 'ResumeContainer', { container_id: 'pause' })).toMatchObject({ code: status.UNKNOWN, details: 'container not paused' });
    await remove('pause');
  });

  it('does not serve AddInterface or RemoveInterface', async () => {
    expect((await raw(guest.address, 'AddInterface', { interface: { name: 'eth9' } })).code).toBe(status.UNIMPLEMENTED);
    expect((await raw(guest.address, 'RemoveInterface', { interface: { name: 'eth9' } })).code).toBe(status.UNIMPLEMENTED);
  });

  it('needs an existing rootfs path', async () => {
    const req = completeRequest('noroot', ['true']);
    req.OCI!.Root = { Path: '' };
    expect(await raw(guest.address, 'CreateContainer', req)).toMatchObject({ code: status.UNKNOWN, details: 'rootfs ("") does not exist' });
    req.OCI!.Root = { Path: `${guest.dir}/missing` };
    expect((await raw(guest.address, 'CreateContainer', req)).code).toBe(status.UNKNOWN);
  });

  it('fails every exec in a container whose mounts lack /sys/fs/cgroup: its init cannot statfs the cgroup root', async () => {
    const withoutCgroup = STANDARD_MOUNTS.map((m) => m.destination!).filter((d) => d !== '/sys/fs/cgroup');
    expect((await run('nocg', ['sleep', '60'], withoutCgroup)).code).toBe(status.OK);
    const exec = await raw(guest.address, 'ExecProcess', { container_id: 'nocg', exec_id: 'e1', process: { Args: ['true'], Env: [], Cwd: '/' } });
    expect(exec.code).toBe(status.UNKNOWN);
    expect(exec.details).toMatch(/cannot statfs cgroup root/);
    await remove('nocg');
  });

  it('takes OOMScoreAdj as an int64 (negative too)', async () => {
    const req = completeRequest('oom', ['true']);
    req.OCI!.Process!.OOMScoreAdj = -500;
    expect((await raw(guest.address, 'CreateContainer', req)).code).toBe(status.OK);
    await remove('oom');
  });
});

describe('kata guest agent, stock mode: a spec without Linux', () => {
  let guest: Guest;
  beforeAll(async () => {
    guest = await startGuest({ flags: ['--stock'] });
    await guest.conn.call('CreateSandbox', { hostname: 'die', sandbox_id: 'die' }, T);
  });
  afterAll(() => guest?.stop());

  it('makes the agent die of a nil dereference (exit 2), ending its processes', async () => {
    await guest.conn.call('CreateContainer', completeRequest('alive', ['sleep', '60']), T);
    await guest.conn.call('StartContainer', { container_id: 'alive' }, T);
    const [victim] = JSON.parse(Buffer.from((await guest.conn.call('ListProcesses', { container_id: 'alive', format: 'json', args: [] }, T)).response.process_list!).toString()) as number[];
    const reply = await raw(guest.address, 'CreateContainer', containerRequest('bare', ['true'], { root: rootfs }));
    expect(reply.code).toBe(status.UNAVAILABLE);
    expect(await eventually(() => guest.stderr().includes('nil pointer dereference'))).toBe(true);
    expect(await guest.exited()).toBe(2);
    expect(await eventually(() => !alive(victim!))).toBe(true);
  });
});
