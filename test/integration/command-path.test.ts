// Guest work goes through the statecharts: execs are process actors whose whole story is
// published, ids a user picks never collide with the runtime's own child ids, and a
// refused exec publishes nothing.
import { describe, expect, it } from 'vitest';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime();

const execEvents = async (sid: string, execId: string) =>
  (await rt.eventsOf(sid)).filter((e) => e.execId === execId).map((e) => [e.type, e.state, e.exitStatus ?? null]);

describe('the command path', () => {
  it('a noop exec exits 0 at once: its wait answers and its events end with the exit', async () => {
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'cp-noop', containers: [{ id: 'c', args: ['sleep', '9'] }] }, start: true });
    const exec = await rt.ok('ContainerExec', { sid: 'cp-noop', cid: 'c' }, { execId: 'e1', args: ['true'] });
    expect(exec).toMatchObject({ execId: 'e1' });
    const wait = await rt.ok('ContainerWait', { sid: 'cp-noop', cid: 'c' }, { execId: 'e1', timeoutMs: 5_000 });
    expect(wait.exitStatus).toBe(0);
    expect(await execEvents('cp-noop', 'e1')).toEqual([
      ['exec-added', 'starting', null],
      ['exec-started', 'running', null],
      ['exit', 'exited', 0],
    ]);
    // Its id stays taken while its exit is remembered.
    const again = await rt.client.request('ContainerExec', { sid: 'cp-noop', cid: 'c' }, { execId: 'e1', args: ['true'] });
    expect(again.error?.code).toBe('AlreadyExists');
    await rt.ok('SandboxDelete', { sid: 'cp-noop' }, { force: true });
  });

  it("an exec named like one of the container's own operations does not collide with it", async () => {
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'cp-ids', containers: [{ id: 'c', args: ['sleep', '9'] }] }, start: true });
    for (const execId of ['startContainer', 'stopContainer', 'createContainer']) {
      await rt.ok('ContainerExec', { sid: 'cp-ids', cid: 'c' }, { execId, args: ['true'] });
    }
    await rt.ok('ContainerStop', { sid: 'cp-ids', cid: 'c' });
    const restarted = await rt.ok('ContainerStart', { sid: 'cp-ids', cid: 'c' });
    expect(restarted.container?.state).toBe('running');
    // The runtime's own child ids contain a '.', which no user id may.
    const internal = await rt.client.request('ContainerExec', { sid: 'cp-ids', cid: 'c' }, { execId: 'op.startContainer', args: ['true'] });
    expect(internal.error?.code).toBe('InvalidArgument');
    await rt.ok('SandboxDelete', { sid: 'cp-ids' }, { force: true });
  });

  it('refuses a bad exec before anything runs, and publishes nothing for it', async () => {
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'cp-bad', containers: [{ id: 'c', args: ['sleep', '9'] }] }, start: true });
    const before = (await rt.eventsOf('cp-bad')).length;
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ execId: 'b1', args: ['env'], env: ['NOEQUALS'] }, /env\[0\] must look like KEY=value/],
      [{ execId: 'b2', args: ['echo', 'a\u0000b'] }, /may not contain NUL/],
      [{ execId: 'b3', args: [] }, /exec needs args/],
    ];
    for (const [body, message] of cases) {
      const reply = await rt.client.request('ContainerExec', { sid: 'cp-bad', cid: 'c' }, body);
      expect(reply.error).toMatchObject({ code: 'InvalidArgument', message: expect.stringMatching(message) });
    }
    expect((await rt.eventsOf('cp-bad')).length).toBe(before);
    await rt.ok('SandboxDelete', { sid: 'cp-bad' }, { force: true });
  });
});
