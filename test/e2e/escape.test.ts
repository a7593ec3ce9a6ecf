// Escape probes: what a hostile client on the bus tries in order to reach the host. Each
// try is a test of its own, and each must fail to escape: the request is refused with a
// stable code and the host file it aimed at is still there, untouched.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subjects } from '../../bus/subjects.js';
import { useRuntime } from '../helpers/runtime.js';
import { GUEST_AGENTS } from './agents.js';

const rt = useRuntime({ host: 'escape' });
let victimDir: string;

beforeAll(() => {
  victimDir = mkdtempSync(join(tmpdir(), 'vc-victim-'));
});

afterAll(() => {
  if (victimDir) rmSync(victimDir, { recursive: true, force: true });
});

/** A host file that must survive the probe. */
function victim(name: string): { path: string; intact: () => boolean } {
  const path = join(victimDir, name);
  writeFileSync(path, `do not delete ${name}\n`);
  return { path, intact: () => existsSync(path) && readFileSync(path, 'utf8') === `do not delete ${name}\n` };
}

const socketFields = { kata: ['grpcSocket'], hyperstart: ['sockCtlName', 'sockTtyName'] } as const;

for (const agent of GUEST_AGENTS) {
  describe(`${agent}: a client cannot make the runtime unlink a host file through agent configuration`, () => {
    let n = 0;
    for (const field of socketFields[agent]) {
      for (const form of ['absolute', 'relative'] as const) {
        it(`${field} as an ${form} path`, async () => {
          const file = victim(`${agent}-${field}-${form}`);
          // The relative form walks up from the runtime's working directory, where a path would have been resolved.
          const value = form === 'absolute' ? file.path : relative(process.cwd(), file.path);
          expect(value.startsWith(form === 'absolute' ? '/' : '..')).toBe(true);
          const id = `esc-${agent.slice(0, 4)}-${++n}`;
          const reply = await rt.client.request(subjects.sandboxCreate(), {
            sandbox: { id, agent, backend: 'namespace', agentConfig: { [field]: value } },
            start: true,
          });
          expect(reply.ok).toBe(false);
          expect(reply.error?.code).toBe('InvalidArgument');
          expect(reply.error?.message).toMatch(new RegExp(`${field} .* is not a socket name`));
          expect(file.intact()).toBe(true);
          // Nothing was created either.
          expect((await rt.client.request(subjects.sandboxOp(id, 'status'))).error?.code).toBe('NotFound');
        });
      }
    }
  });

  describe(`${agent}: a client cannot give a container the host's root`, () => {
    let sid: string;
    beforeAll(async () => {
      sid = `esc-root-${agent.slice(0, 4)}`;
      await rt.ok(subjects.sandboxCreate(), { sandbox: { id: sid, agent, backend: 'namespace' }, start: true });
    });
    afterAll(async () => {
      await rt.client.request(subjects.sandboxOp(sid, 'delete'), { force: true });
    });

    for (const [name, rootfs, message] of [
      ['/', '/', /is the host's root/],
      ['..', '..', /is not an absolute path/],
      ['../../', '../../', /is not an absolute path/],
      ['/tmp/../..', '/tmp/../..', /is the host's root/],
      ['a symlink to /', '/proc/self/root', /is the host's root/],
    ] as const) {
      it(`rootfs ${name}`, async () => {
        const reply = await rt.client.request(subjects.containerCreate(sid), { container: { id: 'c', args: ['true'], rootfs } });
        expect(reply.ok).toBe(false);
        expect(reply.error?.code).toBe('InvalidArgument');
        expect(reply.error?.message).toMatch(message);
        expect((await rt.client.request(subjects.containerOp(sid, 'c', 'status'))).error?.code).toBe('NotFound');
      });
    }

    it("rootfs around the runtime's run directory (other sandboxes' sockets)", async () => {
      const reply = await rt.client.request(subjects.containerCreate(sid), { container: { id: 'c', args: ['true'], rootfs: join(rt.host.runRoot, '..') } });
      expect(reply.error).toMatchObject({ code: 'InvalidArgument', message: expect.stringMatching(/overlaps the runtime's own directory/) });
    });
  });
}
