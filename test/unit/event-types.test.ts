// The event types are defined once (protos/event-types.ts); the contract document and
// the Event message of bus.proto list exactly the same ones.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONTAINER_EVENT_TYPES, EXEC_EVENT_TYPES, HOST_EVENT_TYPES, SANDBOX_EVENT_TYPES } from '../../protos/event-types.js';

const listed = (line: string | undefined) => [...(line ?? '').matchAll(/`([a-z-]+)`/g)].map((m) => m[1]);
const proto = (label: string) => {
  const line = readFileSync('protos/bus.proto', 'utf8').split('\n').find((l) => l.trim().startsWith(`// ${label}`));
  return (line ?? '').replace(/.*?:/, '').replace('.', '').split(',').map((s) => s.trim()).filter(Boolean);
};

describe('event types', () => {
  const doc = readFileSync('docs/events.md', 'utf8').split('\n');
  const row = (start: string) => doc.find((l) => l.startsWith(`| ${start}`));

  it('docs/events.md lists the same types, for sandboxes, containers and execs', () => {
    expect(listed(row('a sandbox'))).toEqual([...SANDBOX_EVENT_TYPES]);
    expect(listed(row('a container'))).toEqual([...CONTAINER_EVENT_TYPES]);
    expect(listed(row('an exec'))).toEqual([...EXEC_EVENT_TYPES]);
    expect(listed(row('a host'))).toEqual([...HOST_EVENT_TYPES]);
  });

  it("bus.proto's Event message lists the same types", () => {
    expect(proto('Sandbox:')).toEqual([...SANDBOX_EVENT_TYPES]);
    expect(proto('Container:')).toEqual([...CONTAINER_EVENT_TYPES]);
    expect(proto('Exec (with exec_id):')).toEqual([...EXEC_EVENT_TYPES]);
    expect(proto('Host (on')).toEqual([...HOST_EVENT_TYPES]);
  });
});
