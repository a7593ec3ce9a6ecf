// One handler per command of the table (bus/commands.gen.ts): the request is already
// decoded strictly; the handler normalises it, calls the registry or the sandbox, and
// shapes the reply. The compiler checks that every command has its handler.
import type { CommandCall, CommandHandlers } from '../bus/command-service.js';
import type { SandboxStore } from '../bus/store.js';
import type { SandboxRegistry } from '../actors/registry.js';
import { normalizeContainerSpec, normalizeSandboxSpec, type SpecDefaults } from '../actors/sandbox-spec.js';

export function createCommandHandlers(registry: SandboxRegistry, store: SandboxStore, defaults: SpecDefaults): CommandHandlers {
  const create = async ({ request }: CommandCall<'SandboxCreate' | 'HostSandboxCreate'>) => {
    const spec = normalizeSandboxSpec(request.sandbox, defaults);
    const sandbox = await registry.create(spec);
    let status = await sandbox.create();
    if (request.start) status = await sandbox.start();
    return { sandbox: status };
  };
  const sandbox = (sid: string) => registry.get(sid);
  return {
    SandboxCreate: create,
    HostSandboxCreate: create,
    SandboxList: async ({ request }) => {
      const records = await store.list();
      return { sandboxes: records.filter((r) => !request.host || r.host === request.host).map((r) => r.status) };
    },
    SandboxStatus: async ({ params }) => ({ sandbox: sandbox(params.sid).status() }),
    SandboxStart: async ({ params }) => ({ sandbox: await sandbox(params.sid).start() }),
    SandboxStop: async ({ params }) => ({ sandbox: await sandbox(params.sid).stop() }),
    SandboxPause: async ({ params }) => ({ sandbox: await sandbox(params.sid).pause() }),
    SandboxResume: async ({ params }) => ({ sandbox: await sandbox(params.sid).resume() }),
    SandboxDelete: async ({ params, request }) => {
      await sandbox(params.sid).delete(request.force ?? false);
      return { id: params.sid };
    },
    SandboxOnlineCpuMem: async ({ params, request }) => {
      await sandbox(params.sid).onlineCpuMem(request.cpus ?? 0);
      return {};
    },
    ContainerCreate: async ({ params, request }) => ({ container: await sandbox(params.sid).createContainer(normalizeContainerSpec(request.container)) }),
    ContainerStatus: async ({ params }) => ({ container: sandbox(params.sid).containerStatus(params.cid) }),
    ContainerStart: async ({ params }) => ({ container: await sandbox(params.sid).startContainer(params.cid) }),
    ContainerStop: async ({ params }) => ({ container: await sandbox(params.sid).stopContainer(params.cid) }),
    ContainerPause: async ({ params }) => ({ container: await sandbox(params.sid).pauseContainer(params.cid) }),
    ContainerResume: async ({ params }) => ({ container: await sandbox(params.sid).resumeContainer(params.cid) }),
    ContainerKill: async ({ params, request }) => {
      await sandbox(params.sid).killContainer(params.cid, request.signal ?? 15, request.all ?? false);
      return {};
    },
    ContainerDelete: async ({ params, request }) => {
      await sandbox(params.sid).deleteContainer(params.cid, request.force ?? false);
      return { id: params.cid };
    },
    ContainerExec: async ({ params, request }) => sandbox(params.sid).exec(params.cid, request),
    ContainerPs: async ({ params, request }) => sandbox(params.sid).processList(params.cid, request),
    ContainerWait: async ({ params, request }) => sandbox(params.sid).wait(params.cid, request),
    ContainerLogs: async ({ params, request }) => sandbox(params.sid).logs(params.cid, request),
    ContainerStats: async ({ params }) => ({ stats: await sandbox(params.sid).stats(params.cid) }),
  };
}
