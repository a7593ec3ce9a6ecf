// Every kind of bad request gets a structured error with a stable code, changes
// nothing, and the runtime keeps serving everyone else.
import { beforeAll, describe, expect, it } from 'vitest';
import { subjects } from '../../bus/subjects.js';
import { MAX_PAYLOAD_BYTES } from '../../bus/codec.js';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime();
const raw = (text: string) => new TextEncoder().encode(text);

beforeAll(async () => {
  await rt.ok(subjects.sandboxCreate(), { sandbox: { id: 'keep', agent: 'noop' }, start: true });
});

const cases: Array<[string, () => [string, unknown], string, RegExp]> = [
  ['malformed JSON', () => [subjects.sandboxCreate(), raw('{"sandbox": {"id": ')], 'InvalidArgument', /not valid UTF-8 JSON/],
  ['bytes that are not UTF-8', () => [subjects.sandboxCreate(), new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])], 'InvalidArgument', /UTF-8/],
  ['a JSON array body', () => [subjects.sandboxCreate(), raw('[1,2]')], 'InvalidArgument', /must be a JSON object/],
  ['an unknown field', () => [subjects.sandboxCreate(), { sandbox: { id: 'x1', agnet: 'noop' } }], 'InvalidArgument', /unknown field sandbox\.agnet/],
  ['an unknown top-level field', () => [subjects.sandboxOp('keep', 'stop'), { force: true }], 'InvalidArgument', /unknown field force/],
  ['a wrong type', () => [subjects.sandboxCreate(), { sandbox: { id: 42 } }], 'InvalidArgument', /sandbox\.id must be a string/],
  ['a negative signal', () => [subjects.containerOp('keep', 'c1', 'kill'), { signal: -9 }], 'InvalidArgument', /signal must be an integer/],
  ['an unknown sandbox', () => [subjects.sandboxOp('nosuch', 'status'), {}], 'NotFound', /sandbox nosuch does not exist/],
  ['an unknown container', () => [subjects.containerOp('keep', 'nosuch', 'status'), {}], 'NotFound', /container nosuch does not exist/],
  ['a command in the wrong state', () => [subjects.sandboxOp('keep', 'start'), {}], 'FailedPrecondition', /cannot start sandbox keep while it is running/],
  ['delete while running', () => [subjects.sandboxOp('keep', 'delete'), {}], 'FailedPrecondition', /while it is running/],
  ['an oversized payload', () => [subjects.sandboxCreate(), raw(JSON.stringify({ sandbox: { id: 'big', annotations: { a: 'x'.repeat(MAX_PAYLOAD_BYTES) } } }))], 'InvalidArgument', /exceeds the limit/],
  ['an invalid id in the body', () => [subjects.sandboxCreate(), { sandbox: { id: 'has space' } }], 'InvalidArgument', /sandbox id "has space" is invalid/],
  ['an id that is too long', () => [subjects.sandboxCreate(), { sandbox: { id: 'a'.repeat(64) } }], 'InvalidArgument', /is invalid/],
  ['an unknown agent type', () => [subjects.sandboxCreate(), { sandbox: { id: 'x2', agent: 'Kata' } }], 'InvalidArgument', /unknown agent type "Kata": accepted values are noop, hyperstart, kata/],
  ['an agent config that does not decode', () => [subjects.sandboxCreate(), { sandbox: { id: 'x3', agent: 'noop', agentConfig: { grpcSocket: '/x' } } }], 'InvalidArgument', /noop agent config does not decode: unknown field agentConfig\.grpcSocket/],
  ['a kata config of the wrong type', () => [subjects.sandboxCreate(), { sandbox: { id: 'x4', agent: 'kata', agentConfig: { longLiveConn: 'yes' } } }], 'InvalidArgument', /kata agent config does not decode: agentConfig\.longLiveConn must be true or false/],
  ['an unknown backend', () => [subjects.sandboxCreate(), { sandbox: { id: 'x5', backend: 'vm' } }], 'InvalidArgument', /unknown backend "vm"/],
  ['an existing id', () => [subjects.sandboxCreate(), { sandbox: { id: 'keep' } }], 'AlreadyExists', /sandbox keep already exists/],
  ['an unknown command', () => [`${subjects.sandboxOp('keep', 'status').replace(/status$/, 'frobnicate')}`, {}], 'InvalidArgument', /unknown command subject/],
  ['a bad env entry', () => [subjects.containerCreate('keep'), { container: { id: 'c9', env: ['NOEQUALS'] } }], 'InvalidArgument', /KEY=value/],
  ['a bad ps format', () => [subjects.containerOp('keep', 'c1', 'ps'), { format: 'yaml' }], 'InvalidArgument', /invalid format option "yaml"/],
];

describe('bad requests', () => {
  beforeAll(async () => {
    expect((await rt.client.request(subjects.containerCreate('keep'), { container: { id: 'c1', args: ['sleep', '9'] } })).ok).toBe(true);
    expect((await rt.client.request(subjects.containerOp('keep', 'c1', 'start'))).ok).toBe(true);
  });

  for (const [name, make, code, message] of cases) {
    it(`${name} → ${code}`, async () => {
      const [subject, body] = make();
      const before = await rt.client.request(subjects.sandboxOp('keep', 'status'));
      const reply = await rt.client.request(subject, body);
      expect(reply.ok).toBe(false);
      expect(reply.error?.code).toBe(code);
      expect(reply.error?.message).toMatch(message);
      const after = await rt.client.request(subjects.sandboxOp('keep', 'status'));
      expect(after).toEqual(before);
    });
  }

  it('names the current state in a FailedPrecondition error', async () => {
    const reply = await rt.client.request(subjects.containerOp('keep', 'c1', 'start'));
    expect(reply.error).toMatchObject({ code: 'FailedPrecondition', state: 'running' });
  });

  it('sets the ADR-32 error headers on failed replies', async () => {
    const msg = await rt.client.nc.request(subjects.sandboxOp('nosuch', 'status'), new Uint8Array(), { timeout: 5000 });
    expect(msg.headers?.get('Nats-Service-Error-Code')).toBe('404');
    expect(msg.headers?.get('Nats-Service-Error')).toMatch(/does not exist/);
  });

  it('keeps serving after all of them: a new sandbox goes through its whole lifecycle', async () => {
    const burst = await Promise.all(cases.map(([, make]) => rt.client.request(...(make() as [string, unknown]))));
    expect(burst.every((r) => r.ok === false)).toBe(true);
    const created = await rt.client.request(subjects.sandboxCreate(), { sandbox: { id: 'after' }, start: true });
    expect(created).toMatchObject({ ok: true, sandbox: { state: 'running' } });
    expect((await rt.client.request(subjects.sandboxOp('after', 'stop'))).ok).toBe(true);
    expect(await rt.client.request(subjects.sandboxOp('after', 'delete'))).toEqual({ ok: true, id: 'after' });
    const list = await rt.client.request(subjects.sandboxList());
    expect((list.sandboxes as Array<{ id: string }>).map((s) => s.id)).toEqual(['keep']);
  });
});
