// runc as the guests' OCI runtime, for both agents (the scenarios: ./runc-scenarios.ts),
// with user namespaces as the host has them by default.
import { expect, it } from 'vitest';
import { useRuntime } from '../helpers/runtime.js';
import { GUEST_AGENTS } from './agents.js';
import { runcScenarios } from './runc-scenarios.js';

// Read by the host each time it starts a guest (actors/guest-binaries.ts); vitest runs each file in a process of its own.
process.env.VC_OCI_RUNTIME = 'runc';

const rt = useRuntime({ host: 'runc-host' });
for (const agent of GUEST_AGENTS) runcScenarios(rt, agent);

it("refuses the vm backend: its guest image has crun only, and nothing is left of the sandbox", async () => {
  const reply = await rt.client.request('SandboxCreate', {}, { sandbox: { id: 'runc-vm', agent: 'kata', backend: 'vm' }, start: true });
  expect(reply.error).toMatchObject({ code: 'FailedPrecondition', message: expect.stringMatching(/VC_OCI_RUNTIME=runc: the vm backend's guest image runs containers through crun only/) });
  expect((await rt.client.request('SandboxStatus', { sid: 'runc-vm' })).error?.code).toBe('NotFound');
});
