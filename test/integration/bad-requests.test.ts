// Every kind of bad request gets a structured error with a stable code, changes
// nothing, and the runtime keeps serving everyone else.
import { beforeAll, describe, expect, it } from 'vitest';
import { subjectOf, type CommandName } from '../../bus/commands.js';
import { MAX_PAYLOAD_BYTES } from '../../bus/codec.js';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime();
const raw = (text: string) => new TextEncoder().encode(text);

beforeAll(async () => {
  await rt.ok('SandboxCreate', {}, { sandbox: { id: 'keep', agent: 'noop' }, start: true });
});

type Attempt = [CommandName, Record<string, string>, unknown];
const cases: Array<[string, () => Attempt, string, RegExp]> = [
  ['malformed JSON', () => ['SandboxCreate', {}, raw('{"sandbox": {"id": ')], 'InvalidArgument', /not valid UTF-8 JSON/],
  ['bytes that are not UTF-8', () => ['SandboxCreate', {}, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])], 'InvalidArgument', /UTF-8/],
  ['a JSON array body', () => ['SandboxCreate', {}, raw('[1,2]')], 'InvalidArgument', /must be a JSON object/],
  ['an unknown field', () => ['SandboxCreate', {}, { sandbox: { id: 'x1', agnet: 'noop' } }], 'InvalidArgument', /unknown field sandbox\.agnet/],
  ['an unknown top-level field', () => ['SandboxStop', { sid: 'keep' }, { force: true }], 'InvalidArgument', /unknown field force/],
  ['a wrong type', () => ['SandboxCreate', {}, { sandbox: { id: 42 } }], 'InvalidArgument', /sandbox\.id must be a string/],
  ['a negative signal', () => ['ContainerKill', { sid: 'keep', cid: 'c1' }, { signal: -9 }], 'InvalidArgument', /signal must be an integer/],
  ['a list page after no valid id', () => ['SandboxList', {}, { after: '../etc' }], 'InvalidArgument', /sandbox id/],
  ['an unknown sandbox', () => ['SandboxStatus', { sid: 'nosuch' }, {}], 'NotFound', /sandbox nosuch does not exist/],
  ['an unknown container', () => ['ContainerStatus', { sid: 'keep', cid: 'nosuch' }, {}], 'NotFound', /container nosuch does not exist/],
  ['a command in the wrong state', () => ['SandboxStart', { sid: 'keep' }, {}], 'FailedPrecondition', /cannot start sandbox keep while it is running/],
  ['delete while running', () => ['SandboxDelete', { sid: 'keep' }, {}], 'FailedPrecondition', /while it is running/],
  ['an oversized payload', () => ['SandboxCreate', {}, raw(JSON.stringify({ sandbox: { id: 'big', annotations: { a: 'x'.repeat(MAX_PAYLOAD_BYTES) } } }))], 'InvalidArgument', /exceeds the limit/],
  ['an invalid id in the body', () => ['SandboxCreate', {}, { sandbox: { id: 'has space' } }], 'InvalidArgument', /sandbox id "has space" is invalid/],
  ['an id that is too long', () => ['SandboxCreate', {}, { sandbox: { id: 'a'.repeat(64) } }], 'InvalidArgument', /is invalid/],
  ['an unknown agent type', () => ['SandboxCreate', {}, { sandbox: { id: 'x2', agent: 'Kata' } }], 'InvalidArgument', /unknown agent type "Kata": accepted values are noop, hyperstart, kata/],
  ['an agent config that does not decode', () => ['SandboxCreate', {}, { sandbox: { id: 'x3', agent: 'noop', agentConfig: { grpcSocket: '/x' } } }], 'InvalidArgument', /noop agent config does not decode: unknown field agentConfig\.grpcSocket/],
  ['a kata config of the wrong type', () => ['SandboxCreate', {}, { sandbox: { id: 'x4', agent: 'kata', agentConfig: { longLiveConn: 'yes' } } }], 'InvalidArgument', /kata agent config does not decode: agentConfig\.longLiveConn must be true or false/],
  ['an unknown backend', () => ['SandboxCreate', {}, { sandbox: { id: 'x5', backend: 'xen' } }], 'InvalidArgument', /unknown backend "xen"/],
  ['an endpoint to attach to on a backend that starts its own guest', () => ['SandboxCreate', {}, { sandbox: { id: 'x6', attach: { grpcSocket: '/tmp/kata.sock' } } }], 'InvalidArgument', /only backend "external" takes one/],
  ['an existing id', () => ['SandboxCreate', {}, { sandbox: { id: 'keep' } }], 'AlreadyExists', /sandbox keep already exists/],
  ['a container with no command', () => ['ContainerCreate', { sid: 'keep' }, { container: { id: 'c8' } }], 'InvalidArgument', /container\.args is empty: a container needs a command/],
  ['a container with empty args', () => ['ContainerCreate', { sid: 'keep' }, { container: { id: 'c8', args: [] } }], 'InvalidArgument', /container\.args is empty/],
  ['a sandbox whose container has no command', () => ['SandboxCreate', {}, { sandbox: { id: 'x7', containers: [{ id: 'c' }] } }], 'InvalidArgument', /sandbox\.containers\[0\]\.args is empty/],
  ['an exec with no command', () => ['ContainerExec', { sid: 'keep', cid: 'c1' }, { args: [] }], 'InvalidArgument', /exec needs args/],
  ['a resize to 0 rows', () => ['ContainerResize', { sid: 'keep', cid: 'c1' }, { rows: 0, cols: 80 }], 'InvalidArgument', /resize\.rows must be a whole number from 1 to 65535, got 0/],
  ['a resize with no cols', () => ['ContainerResize', { sid: 'keep', cid: 'c1' }, { rows: 24 }], 'InvalidArgument', /resize\.cols must be a whole number from 1 to 65535, got nothing/],
  ['a resize beyond a winsize', () => ['ContainerResize', { sid: 'keep', cid: 'c1' }, { rows: 65536, cols: 80 }], 'InvalidArgument', /resize\.rows must be a whole number from 1 to 65535, got 65536/],
  ['a resize beyond uint32', () => ['ContainerResize', { sid: 'keep', cid: 'c1' }, { rows: 2 ** 40, cols: 80 }], 'InvalidArgument', /rows must be/],
  ['a resize of the wrong type', () => ['ContainerResize', { sid: 'keep', cid: 'c1' }, { rows: '24', cols: 80 }], 'InvalidArgument', /rows must be/],
  ['a resize of a process without a terminal', () => ['ContainerResize', { sid: 'keep', cid: 'c1' }, { rows: 24, cols: 80 }], 'FailedPrecondition', /container c1 was started without a terminal/],
  ['a resize of an unknown exec', () => ['ContainerResize', { sid: 'keep', cid: 'c1' }, { execId: 'nosuch', rows: 24, cols: 80 }], 'NotFound', /exec nosuch is not running in container c1/],
  ['a console size without a terminal', () => ['ContainerCreate', { sid: 'keep' }, { container: { id: 'c8', args: ['x'], consoleSize: { rows: 24, cols: 80 } } }], 'InvalidArgument', /consoleSize is the size of a terminal/],
  ['a console size of 0 columns', () => ['ContainerExec', { sid: 'keep', cid: 'c1' }, { args: ['x'], terminal: true, consoleSize: { rows: 24, cols: 0 } }], 'InvalidArgument', /consoleSize\.cols must be a whole number/],
  ['a bad env entry', () => ['ContainerCreate', { sid: 'keep' }, { container: { id: 'c9', env: ['NOEQUALS'] } }], 'InvalidArgument', /KEY=value/],
  ['a bad ps format', () => ['ContainerPs', { sid: 'keep', cid: 'c1' }, { format: 'yaml' }], 'InvalidArgument', /invalid format option "yaml"/],
];

describe('bad requests', () => {
  beforeAll(async () => {
    expect((await rt.client.request('ContainerCreate', { sid: 'keep' }, { container: { id: 'c1', args: ['sleep', '9'] } })).ok).toBe(true);
    expect((await rt.client.request('ContainerStart', { sid: 'keep', cid: 'c1' })).ok).toBe(true);
  });

  for (const [name, make, code, message] of cases) {
    it(`${name} → ${code}`, async () => {
      const [command, params, body] = make();
      const before = await rt.client.request('SandboxStatus', { sid: 'keep' });
      const reply = await rt.client.request(command, params as never, body as never);
      expect(reply.ok).toBe(false);
      expect(reply.error?.code).toBe(code);
      expect(reply.error?.message).toMatch(message);
      const after = await rt.client.request('SandboxStatus', { sid: 'keep' });
      expect(after).toEqual(before);
    });
  }

  it('names the current state in a FailedPrecondition error', async () => {
    const reply = await rt.client.request('ContainerStart', { sid: 'keep', cid: 'c1' });
    expect(reply.error).toMatchObject({ code: 'FailedPrecondition', state: 'running' });
  });

  it('answers a subject under the command root that names no command with InvalidArgument', async () => {
    const subject = subjectOf('SandboxStatus', { sid: 'keep' }).replace(/status$/, 'frobnicate');
    const reply = await rt.client.requestSubject(subject, new Uint8Array());
    expect(reply).toMatchObject({ ok: false, error: { code: 'InvalidArgument', message: expect.stringMatching(/unknown command subject/) } });
  });

  it('sets the ADR-32 error headers on failed replies', async () => {
    const msg = await rt.client.nc.request(subjectOf('SandboxStatus', { sid: 'nosuch' }), new Uint8Array(), { timeout: 5000 });
    expect(msg.headers?.get('Nats-Service-Error-Code')).toBe('404');
    expect(msg.headers?.get('Nats-Service-Error')).toMatch(/does not exist/);
  });

  it('keeps serving after all of them: a new sandbox goes through its whole lifecycle', async () => {
    const burst = await Promise.all(cases.map(([, make]) => make()).map(([command, params, body]) => rt.client.request(command, params as never, body as never)));
    expect(burst.every((r) => r.ok === false)).toBe(true);
    const created = await rt.client.request('SandboxCreate', {}, { sandbox: { id: 'after' }, start: true });
    expect(created).toMatchObject({ ok: true, sandbox: { state: 'running' } });
    expect((await rt.client.request('SandboxStop', { sid: 'after' })).ok).toBe(true);
    expect(await rt.client.request('SandboxDelete', { sid: 'after' })).toEqual({ ok: true, id: 'after' });
    const list = await rt.client.request('SandboxList', {});
    expect((list.sandboxes as Array<{ id: string }>).map((s) => s.id)).toEqual(['keep']);
  });
});
