// Maps each bus command to the registry and sandbox actors: decode the request strictly,
// call the actor, shape the reply.
import { decode } from '../bus/codec.js';
import type * as Bus from '../bus/messages.gen.js';
import type { CommandHandler } from '../bus/command-service.js';
import type { SandboxStore } from '../bus/store.js';
import type { ParsedCommand } from '../bus/subjects.js';
import type { SandboxRegistry } from '../actors/registry.js';
import { normalizeContainerSpec, normalizeSandboxSpec, type SpecDefaults } from '../actors/sandbox-spec.js';

export function createCommandHandler(registry: SandboxRegistry, store: SandboxStore, defaults: SpecDefaults): CommandHandler {
  return {
    owns: (sid) => registry.has(sid),
    async handle(command: ParsedCommand, data: Uint8Array): Promise<Record<string, unknown>> {
      switch (command.kind) {
        case 'sandbox.create': {
          const req = decode<Bus.SandboxCreateRequest>('SandboxCreateRequest', data);
          // The caller's role goes here once the bus tells it (the security layer); until then none.
          const spec = normalizeSandboxSpec(req.sandbox, defaults, undefined);
          const sandbox = await registry.create(spec);
          let status = await sandbox.create();
          if (req.start) status = await sandbox.start();
          return { sandbox: status };
        }
        case 'sandbox.list': {
          const req = decode<Bus.SandboxListRequest>('SandboxListRequest', data);
          const records = await store.list();
          return { sandboxes: records.filter((r) => !req.host || r.host === req.host).map((r) => r.status) };
        }
        case 'sandbox': {
          const sandbox = registry.get(command.sid);
          switch (command.op) {
            case 'status':
              decode<Bus.Empty>('Empty', data);
              return { sandbox: sandbox.status() };
            case 'start':
              decode<Bus.Empty>('Empty', data);
              return { sandbox: await sandbox.start() };
            case 'stop':
              decode<Bus.Empty>('Empty', data);
              return { sandbox: await sandbox.stop() };
            case 'pause':
              decode<Bus.Empty>('Empty', data);
              return { sandbox: await sandbox.pause() };
            case 'resume':
              decode<Bus.Empty>('Empty', data);
              return { sandbox: await sandbox.resume() };
            case 'delete': {
              const req = decode<Bus.SandboxDeleteRequest>('SandboxDeleteRequest', data);
              await sandbox.delete(req.force ?? false);
              return { id: command.sid };
            }
            case 'online-cpu-mem': {
              const req = decode<Bus.OnlineCpuMemRequest>('OnlineCpuMemRequest', data);
              await sandbox.onlineCpuMem(req.cpus ?? 0);
              return {};
            }
          }
          break;
        }
        case 'container.create': {
          const sandbox = registry.get(command.sid);
          const req = decode<Bus.ContainerCreateRequest>('ContainerCreateRequest', data);
          return { container: await sandbox.createContainer(normalizeContainerSpec(req.container, 'container', defaults.containers, undefined)) };
        }
        case 'container': {
          const sandbox = registry.get(command.sid);
          const cid = command.cid;
          switch (command.op) {
            case 'status':
              decode<Bus.Empty>('Empty', data);
              return { container: sandbox.containerStatus(cid) };
            case 'start':
              decode<Bus.Empty>('Empty', data);
              return { container: await sandbox.startContainer(cid) };
            case 'stop':
              decode<Bus.Empty>('Empty', data);
              return { container: await sandbox.stopContainer(cid) };
            case 'pause':
              decode<Bus.Empty>('Empty', data);
              return { container: await sandbox.pauseContainer(cid) };
            case 'resume':
              decode<Bus.Empty>('Empty', data);
              return { container: await sandbox.resumeContainer(cid) };
            case 'delete': {
              const req = decode<Bus.ContainerDeleteRequest>('ContainerDeleteRequest', data);
              await sandbox.deleteContainer(cid, req.force ?? false);
              return { id: cid };
            }
            case 'kill': {
              const req = decode<Bus.ContainerKillRequest>('ContainerKillRequest', data);
              await sandbox.killContainer(cid, req.signal ?? 15, req.all ?? false);
              return {};
            }
            case 'exec': {
              const req = decode<Bus.ContainerExecRequest>('ContainerExecRequest', data);
              return { ...(await sandbox.exec(cid, req)) };
            }
            case 'ps': {
              const req = decode<Bus.ContainerPsRequest>('ContainerPsRequest', data);
              return { ...(await sandbox.processList(cid, req)) };
            }
            case 'logs': {
              const req = decode<Bus.ContainerLogsRequest>('ContainerLogsRequest', data);
              return { ...(await sandbox.logs(cid, req)) };
            }
            case 'stats':
              decode<Bus.Empty>('Empty', data);
              return { stats: await sandbox.stats(cid) };
            case 'wait': {
              const req = decode<Bus.ContainerWaitRequest>('ContainerWaitRequest', data);
              return { ...(await sandbox.wait(cid, req)) };
            }
          }
        }
      }
      throw new Error(`unhandled command ${JSON.stringify(command)}`);
    },
  };
}
