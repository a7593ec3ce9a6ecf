// The live list the page shows, without a browser: a change reaches it through the
// events and a prompt re-read of the list, not only through the periodic one.
import { afterEach, expect, it, vi } from 'vitest';
import { LiveList } from '../../ui/live.js';
import type { ListMessage } from '../../ui/protocol.js';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime();
let list: LiveList | undefined;

afterEach(() => list?.stop());

it('lists a new sandbox, its next state and its removal at once, with the periodic re-read an hour away', async () => {
  // An hour: a row that arrives came from the change, never from the periodic read.
  list = new LiveList(rt.client, 60_000, undefined, 3_600_000);
  await list.start();
  const seen: string[] = [];
  list.subscribe((m: ListMessage) => {
    if (m.kind !== 'sandboxes') return;
    for (const r of m.upsert) if (r.id === 'll-1') seen.push(r.state);
    if (m.remove.includes('ll-1')) seen.push('removed');
  });
  const settled = { timeout: 10_000 };
  await rt.ok('SandboxCreate', {}, { sandbox: { id: 'll-1' }, start: true });
  await vi.waitFor(() => expect(seen.at(-1)).toBe('running'), settled);
  await rt.ok('SandboxPause', { sid: 'll-1' });
  await vi.waitFor(() => expect(seen.at(-1)).toBe('paused'), settled);
  await rt.ok('SandboxDelete', { sid: 'll-1' }, { force: true });
  await vi.waitFor(() => expect(seen.at(-1)).toBe('removed'), settled);
});
