// A privileged container, asked for by an operator (the bus enforces roles, so only
// operators may create containers): the confinement the escape probes check is really
// what a privileged container is spared.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useRuntime } from '../helpers/runtime.js';
import { GUEST_AGENTS } from './agents.js';

const rt = useRuntime({ host: 'privileged' });

for (const agent of GUEST_AGENTS) {
  describe(`${agent}: an operator's privileged container`, () => {
    const sid = `priv-${agent.slice(0, 4)}`;
    beforeAll(async () => {
      await rt.ok('SandboxCreate', {}, { sandbox: { id: sid, agent, backend: 'namespace' }, start: true });
    });
    afterAll(async () => {
      await rt.client.request('SandboxDelete', { sid: sid }, { force: true });
    });

    const run = async (id: string, privileged: boolean) => {
      await rt.ok('ContainerCreate', { sid: sid }, { container: { id, args: ['cat', '/proc/self/status'], privileged } });
      await rt.ok('ContainerStart', { sid: sid, cid: id });
      await rt.ok('ContainerWait', { sid: sid, cid: id }, { timeoutMs: 20_000 });
      const text = (await rt.ok('ContainerLogs', { sid: sid, cid: id })).stdout ?? '';
      return Object.fromEntries(text.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
    };

    it('keeps every capability the guest has, without seccomp filter or no_new_privs', async () => {
      const status = await run('p', true);
      // Every capability the guest agent itself may hold (in its user namespace, where there is one).
      const guest = rt.host.host.registry.get(sid).backend.pid!;
      const guestBounding = BigInt(`0x${/^CapBnd:\s+(\S+)$/m.exec(readFileSync(`/proc/${guest}/status`, 'utf8'))![1]}`);
      expect(BigInt(`0x${status.CapEff}`)).toBe(guestBounding);
      expect(status.Seccomp).toBe('0');
      expect(status.NoNewPrivs).toBe('0');
    });

    it('still confines a container that does not ask', async () => {
      const status = await run('q', false);
      expect(status.CapEff).toBe('00000000a80425fb');
      expect(status.Seccomp).toBe('2');
    });
  });
}
