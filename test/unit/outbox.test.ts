// The outbox on its own, against a stand-in for the stream (the unit under test is the
// outbox; the real stream is in test/integration/nats-outage.test.ts): order, the
// file on disk, what an earlier process left, the limit, a late retry.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EventOutbox, type OutboxOptions } from '../../bus/outbox.js';
import { BusHealth } from '../../bus/health.js';
import { silentLog } from '../helpers/runtime.js';
import { waitFor } from '../backends/helpers.js';
import { mountSmallDisk } from '../helpers/small-disk.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A stream that refuses while `down` is set and records what it stored. */
function stream() {
  const stored: string[] = [];
  const state = { down: false, checked: [] as string[] };
  return {
    stored,
    state,
    publish: async (_subject: string, _data: Uint8Array, msgId: string) => {
      if (state.down) throw new Error('timeout');
      stored.push(msgId);
    },
    storedAlready: async (_subject: string, msgId: string) => {
      state.checked.push(msgId);
      return stored.includes(msgId);
    },
  };
}

function outbox(s: ReturnType<typeof stream>, extra: Partial<OutboxOptions> = {}, dir = mkdtempSync(join(tmpdir(), 'vc-outbox-')), removeAfter = true) {
  if (removeAfter) dirs.push(dir);
  const health = new BusHealth();
  const box = new EventOutbox({ dir, health, log: silentLog, publish: s.publish, stored: s.storedAlready, duplicateWindowMs: 120_000, ...extra });
  return { box, health, dir };
}

const data = new TextEncoder().encode('{}');

describe('the event outbox', () => {
  it('keeps what the stream refused on disk and stores it in order, before anything newer', async () => {
    const s = stream();
    const { box, dir } = outbox(s);
    expect(await box.publish('s1.a', 1, 'x', data, 's1.a.1')).toBe('stored');
    s.state.down = true;
    expect(await box.publish('s1.a', 2, 'x', data, 's1.a.2')).toBe('queued');
    // Nothing newer overtakes it, even with the stream back.
    s.state.down = false;
    const third = box.publish('s1.a', 3, 'x', data, 's1.a.3');
    expect(readdirSync(dir)).toContain('s1.a.jsonl');
    expect(await third).toBe('queued');
    await waitFor(() => (box.size === 0 ? true : undefined), 'the lane to be stored');
    expect(s.stored).toEqual(['s1.a.1', 's1.a.2', 's1.a.3']);
    expect(readdirSync(dir)).toEqual([]);
    box.close();
  });

  it('stores at start, in order and once, what an earlier process left', async () => {
    const s = stream();
    const dir = mkdtempSync(join(tmpdir(), 'vc-outbox-'));
    const line = (order: number) => JSON.stringify({ order, subject: 'x', msgId: `s2.b.${order}`, data: '{}', attempted: false, at: Date.now() });
    // #1 was stored before the crash (its done line), #3 was queued after #2, a torn line ends it.
    writeFileSync(join(dir, 's2.b.jsonl'), [line(1), line(3), line(2), JSON.stringify({ done: 1 }), '{"order":4,'].join('\n'));
    const { box } = outbox(s, {}, dir);
    expect(box.open()).toBe(2);
    await waitFor(() => (box.size === 0 ? true : undefined), 'the lane to be stored');
    expect(s.stored).toEqual(['s2.b.2', 's2.b.3']);
    box.close();
  });

  it('drops what comes past its limit, and says so', async () => {
    const s = stream();
    s.state.down = true;
    const { box } = outbox(s, { maxPerLane: 2 });
    expect(await box.publish('s3.c', 1, 'x', data, 's3.c.1')).toBe('queued');
    expect(await box.publish('s3.c', 2, 'x', data, 's3.c.2')).toBe('queued');
    expect(await box.publish('s3.c', 3, 'x', data, 's3.c.3')).toBe('dropped');
    s.state.down = false;
    await waitFor(() => (box.size === 0 ? true : undefined), 'the lane to be stored');
    expect(s.stored).toEqual(['s3.c.1', 's3.c.2']);
    box.close();
  });

  it('asks the stream before sending again what may be stored, once the duplicate window cannot tell', async () => {
    const s = stream();
    const dir = mkdtempSync(join(tmpdir(), 'vc-outbox-'));
    const old = Date.now() - 10 * 60_000;
    // Sent long ago with an unknown outcome (the stream has it), and one it does not have.
    s.stored.push('s4.d.1');
    writeFileSync(join(dir, 's4.d.jsonl'), [1, 2].map((order) => JSON.stringify({ order, subject: 'x', msgId: `s4.d.${order}`, data: '{}', attempted: true, at: old })).join('\n') + '\n');
    const { box } = outbox(s, {}, dir);
    box.open();
    await waitFor(() => (box.size === 0 ? true : undefined), 'the lane to be stored');
    expect(s.state.checked).toEqual(['s4.d.1', 's4.d.2']);
    expect(s.stored).toEqual(['s4.d.1', 's4.d.2']);
    box.close();
  });

  it('sets aside, unpublished, the lane of a sandbox that is no longer this host\'s', async () => {
    const s = stream();
    s.state.down = true;
    const { box, dir } = outbox(s, { stillOwned: async (lane) => lane !== 's5.e' });
    await box.publish('s5.e', 1, 'x', data, 's5.e.1');
    await box.publish('s6.f', 1, 'x', data, 's6.f.1');
    s.state.down = false;
    await waitFor(() => (box.size === 0 ? true : undefined), 'the lanes to be settled');
    expect(s.stored).toEqual(['s6.f.1']);
    expect(readdirSync(dir)).toEqual(['s5.e.forgotten']);
    expect(readFileSync(join(dir, 's5.e.forgotten'), 'utf8')).toContain('s5.e.1');
    box.close();
  });

  it('drops, and says so, an event its disk refuses, whole: no torn line swallows the next one', async () => {
    const disk = mountSmallDisk(64, '0700');
    const dir = disk.dir;
    const boxes: EventOutbox[] = [];
    try {
      disk.fill();
      const s = stream();
      s.state.down = true;
      const { box } = outbox(s, {}, dir, false);
      boxes.push(box);
      // Not a byte free: refused at once, the command hears of it.
      expect(await box.publish('s8.h', 1, 'x', data, 's8.h.1')).toBe('dropped');
      disk.free();
      disk.fill(4096);
      // Each line is about 3 KiB: the first fits the free page, the second would cross it.
      const big = new TextEncoder().encode(JSON.stringify({ pad: 'x'.repeat(2800) }));
      expect(await box.publish('s7.g', 1, 'x', big, 's7.g.1')).toBe('queued');
      expect(await box.publish('s7.g', 2, 'x', big, 's7.g.2')).toBe('dropped');
      const kept = readFileSync(join(dir, 's7.g.jsonl'), 'utf8');
      expect(kept.endsWith('\n') && kept.split('\n').filter(Boolean).map((l) => JSON.parse(l).msgId)).toEqual(['s7.g.1']);
      disk.free();
      expect(await box.publish('s7.g', 3, 'x', big, 's7.g.3')).toBe('queued');
      box.close();
      // What the next process finds: both kept events, whole, stored in order.
      const next = stream();
      const { box: again } = outbox(next, {}, dir, false);
      boxes.push(again);
      expect(again.open()).toBe(2);
      await waitFor(() => (again.size === 0 ? true : undefined), 'the lane to be stored');
      expect(next.stored).toEqual(['s7.g.1', 's7.g.3']);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      // The files must be closed for the unmount.
      for (const b of boxes) b.close();
      disk.remove();
    }
  });
});
