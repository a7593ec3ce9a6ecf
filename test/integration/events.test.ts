// Lifecycle events: containerd order, per-sandbox sequence numbers, live follow equals
// replay from the start, replay from a sequence number, de-duplication by Nats-Msg-Id.
import { describe, expect, it } from 'vitest';
import type { CommandName, CommandParams, CommandRequest } from '../../bus/commands.js';
import { subjects } from '../../bus/subjects.js';
import { readEvents, type StoredEvent } from '../../bus/event-reader.js';
import { EventPublisher } from '../../bus/events.js';
import { jetstreamManager } from '@nats-io/jetstream';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime();

async function collect(it: AsyncGenerator<StoredEvent>, count: number): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const e of it) {
    out.push(e);
    if (out.length === count) break;
  }
  return out;
}

describe('events', () => {
  it('are followed live in containerd order and replay identically', async () => {
    // Following from the start of the (still empty) sandbox history: nothing can be missed.
    const live = collect(readEvents(rt.client.nc, { sandboxId: 'ev1', follow: true }), 15);
    const ok = async <C extends CommandName>(name: C, params: CommandParams<C>, body?: CommandRequest<C>) => expect((await rt.client.request(name, params, body)).ok).toBe(true);
    await ok('SandboxCreate', {}, { sandbox: { id: 'ev1', containers: [{ id: 'a', args: ['x'] }] } });
    await ok('SandboxStart', { sid: 'ev1' });
    await ok('ContainerExec', { sid: 'ev1', cid: 'a' }, { execId: 'e1', args: ['ls'] });
    // A noop exec exits at once: its exit is stored before the next command.
    await ok('ContainerWait', { sid: 'ev1', cid: 'a' }, { execId: 'e1' });
    await ok('SandboxPause', { sid: 'ev1' });
    await ok('SandboxResume', { sid: 'ev1' });
    await ok('ContainerStop', { sid: 'ev1', cid: 'a' });
    await ok('SandboxStop', { sid: 'ev1' });
    await ok('SandboxDelete', { sid: 'ev1' });

    const followed = await live;
    const shape = followed.map((e) => [e.event.seq, e.event.containerId ?? '-', e.event.execId ?? '-', e.event.type]);
    expect(shape).toEqual([
      [1, '-', '-', 'create'],
      [2, 'a', '-', 'create'],
      [3, 'a', '-', 'start'],
      [4, '-', '-', 'start'],
      [5, 'a', 'e1', 'exec-added'],
      [6, 'a', 'e1', 'exec-started'],
      [7, 'a', 'e1', 'exit'],
      [8, 'a', '-', 'pause'],
      [9, '-', '-', 'pause'],
      [10, 'a', '-', 'resume'],
      [11, '-', '-', 'resume'],
      [12, 'a', '-', 'exit'],
      [13, '-', '-', 'stop'],
      [14, 'a', '-', 'delete'],
      [15, '-', '-', 'delete'],
    ]);
    const exit = followed[11]!.event;
    expect(exit.exitStatus).toBe(0);
    expect(Date.parse(exit.exitedAt!)).toBeGreaterThan(0);
    expect(followed.every((e) => e.event.host === 'test-host' && Date.parse(e.event.time!) > 0)).toBe(true);
    expect(followed[0]!.subject).toBe(subjects.sandboxEvent('ev1', 'create'));
    expect(followed[1]!.subject).toBe(subjects.containerEvent('ev1', 'a', 'create'));

    const replayed: StoredEvent[] = [];
    for await (const e of readEvents(rt.client.nc, { sandboxId: 'ev1' })) replayed.push(e);
    expect(replayed).toEqual(followed);

    const fromStreamStart: StoredEvent[] = [];
    for await (const e of readEvents(rt.client.nc, { since: 1 })) fromStreamStart.push(e);
    expect(fromStreamStart.filter((e) => e.event.sandboxId === 'ev1')).toEqual(followed);

    const since = [];
    for await (const e of readEvents(rt.client.nc, { sandboxId: 'ev1', since: 12 })) since.push(e.event.seq);
    expect(since).toEqual([12, 13, 14, 15]);
  });

  it('stores a re-published event once (Nats-Msg-Id de-duplication)', async () => {
    // Only hosts may publish events: the publisher runs on the host's connection.
    const publisher = new EventPublisher(rt.host.host.nc);
    const jsm = await jetstreamManager(rt.host.host.nc);
    const before = (await jsm.streams.info('VC_EVENTS')).state.messages;
    const event = { type: 'create', sandboxId: 'dup', seq: 1, time: new Date().toISOString(), state: 'ready' };
    await publisher.publish(event, 'dup.x.1');
    await publisher.publish(event, 'dup.x.1');
    await publisher.publish({ ...event, seq: 2 }, 'dup.x.2');
    expect((await jsm.streams.info('VC_EVENTS')).state.messages).toBe(before + 2);
  });
});
