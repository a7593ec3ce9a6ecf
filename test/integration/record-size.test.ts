// A sandbox's record is one bus message (a KV value): containers with large specs must
// not grow it past the server's max_payload, after which no later change of the sandbox
// could be stored. The container that would is refused with ResourceExhausted before
// anything is made; the record stays current, and smaller changes still go through.
import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime({ host: 'records' });

describe('the size of a sandbox record', () => {
  it("refuses the container that would push the record past max_payload, and keeps every change before it stored", async () => {
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'big', agent: 'noop' }, start: true });
    // About 50 KiB of environment a container (each request stays under the 64 KiB body limit).
    const env = Array.from({ length: 50 }, (_, i) => `V${i}=${'x'.repeat(1000)}`);
    const made: string[] = [];
    let refused: { code?: string; message?: string } | undefined;
    for (let i = 0; i < 40 && !refused; i++) {
      const reply = await rt.client.request('ContainerCreate', { sid: 'big' }, { container: { id: `c${i}`, args: ['sleep', '1'], env } });
      if (reply.ok) made.push(`c${i}`);
      refused = reply.error;
    }
    expect(refused).toMatchObject({ code: 'ResourceExhausted', message: expect.stringMatching(/record would pass the bus's message limit \(max_payload\)/) });
    expect(made.length).toBeGreaterThan(3);
    const next = `c${made.length}`;
    expect((await rt.client.request('ContainerStatus', { sid: 'big', cid: next }, {})).error).toMatchObject({ code: 'NotFound' });
    // A small container still fits, and the stored record has every container made.
    await rt.ok('ContainerCreate', { sid: 'big' }, { container: { id: 'small', args: ['true'] } });
    const kv = await new Kvm(rt.host.host.nc).open('vc_sandboxes');
    const record = JSON.parse(new TextDecoder().decode((await kv.get('big'))!.value)) as { status: { containers: Array<{ id: string }> } };
    expect(record.status.containers.map((c) => c.id)).toEqual([...made, 'small']);
    await rt.ok('SandboxDelete', { sid: 'big' }, { force: true });
  });
});
