// One handler per command of the table (bus/commands.gen.ts): the request is already
// decoded strictly; the handler normalises it and hands it to the sandbox's command layer
// (actors/sandbox-commands.ts) with the command's deadline. Commands the table marks as
// changing state run one at a time per sandbox. The compiler checks that every command
// has its handler.
import type { CommandCall, CommandHandlers } from '../bus/command-service.js';
import { commands as table, type CommandName } from '../bus/commands.js';
import { StaleRevisionError, type SandboxRecord, type SandboxStore } from '../bus/store.js';
import { failedPrecondition, notFound, unavailable } from '../bus/errors.js';
import { lostStatus, type LostHost } from '../bus/liveness.js';
import { checkId } from '../bus/subjects.js';
import { encode } from '../bus/codec.js';
import type { SandboxRegistry } from '../actors/registry.js';
import type { SandboxCommands } from '../actors/sandbox-commands.js';
import { normalizeContainerSpec, normalizeSandboxSpec, senderOfChange, type SpecDefaults } from '../actors/sandbox-spec.js';

/** What the handlers know of other hosts (bus/liveness.ts). */
export interface HostsView {
  lost(host: string): LostHost | undefined;
  /** An operator dropped the record of a lost host's sandbox. */
  forgotten(record: SandboxRecord): void;
}

/** A reply's room for sandboxes when the server's max_payload is not known (its default, 1 MiB, less headers). */
const DEFAULT_LIST_REPLY_BYTES = 1024 * 1024 - 8192;

/**
 * One page of a list in id order (as the store lists records): the items after `after`,
 * as many as `budget` bytes of their JSON hold (one at least), and the id to continue
 * after when some are left.
 */
export function listPage<T extends { id?: string }>(items: T[], after: string, budget: number): { items: T[]; next?: string } {
  const page: T[] = [];
  let bytes = 64;
  for (const item of items.filter((i) => (i.id ?? '') > after)) {
    const size = encode(item).byteLength + 1;
    if (page.length > 0 && bytes + size > budget) return { items: page, next: page.at(-1)!.id };
    page.push(item);
    bytes += size;
  }
  return { items: page };
}

export function createCommandHandlers(
  registry: SandboxRegistry,
  store: SandboxStore,
  defaults: SpecDefaults,
  hosts?: HostsView,
  /** How many bytes of sandboxes a list reply holds (the server's max_payload, less headers). */
  listReplyBytes = DEFAULT_LIST_REPLY_BYTES,
): CommandHandlers {
  /** Runs a command on its sandbox: queued behind the others when it changes state. */
  const on = <C extends CommandName, T>(call: CommandCall<C> & { params: { sid: string } }, run: (s: SandboxCommands) => Promise<T>): Promise<T> => {
    const sandbox = registry.get(call.params.sid);
    const commands = sandbox.commands;
    if (!table[call.name].changesState) return run(commands);
    // A change now could not be recorded (the bus is down, older events wait): refuse it at once.
    sandbox.journal.assertWritable();
    return commands.exclusive(() => run(commands));
  };
  const limits = (call: CommandCall<CommandName>) => ({ deadline: call.deadline, signal: call.signal });

  const create = async (call: CommandCall<'SandboxCreate' | 'HostSandboxCreate'>) => {
    // The server lets only operators (and hosts) send commands that change state.
    const spec = normalizeSandboxSpec(call.request.sandbox, defaults, senderOfChange(defaults.containers));
    const sandbox = await registry.create(spec, call.deadline);
    const commands = sandbox.commands;
    const status = await commands.exclusive(async () => {
      const created = await commands.create();
      return call.request.start ? commands.start(limits(call)) : created;
    });
    return { sandbox: status };
  };

  return {
    SandboxCreate: create,
    HostSandboxCreate: create,
    SandboxList: async ({ request }) => {
      const after = request.after ? checkId('sandbox', request.after) : '';
      const records = await store.list();
      const view = (r: SandboxRecord) => {
        const lost = hosts?.lost(r.host);
        return lost ? lostStatus(r.status, lost) : r.status;
      };
      const page = listPage(records.filter((r) => !request.host || r.host === request.host).map(view), after, listReplyBytes);
      return page.next ? { sandboxes: page.items, next: page.next } : { sandboxes: page.items };
    },
    SandboxForget: async ({ request }) => {
      const id = checkId('sandbox', request.id);
      const entry = await store.entry(id);
      if (!entry) throw notFound(`sandbox ${id} does not exist`);
      const owner = entry.record.host;
      if (registry.has(id) || !hosts?.lost(owner)) {
        throw failedPrecondition(`sandbox ${id} is on host ${owner}, which is not lost: delete it instead`, entry.record.status.state);
      }
      try {
        await store.remove(id, entry.revision);
      } catch (err) {
        if (err instanceof StaleRevisionError) throw unavailable(`sandbox ${id} changed meanwhile: look again before forgetting it`);
        throw err;
      }
      hosts.forgotten(entry.record);
      return { id };
    },
    SandboxStatus: async ({ params }) => ({ sandbox: registry.get(params.sid).status() }),
    SandboxStart: (c) => on(c, async (s) => ({ sandbox: await s.start(limits(c)) })),
    SandboxStop: (c) => on(c, async (s) => ({ sandbox: await s.stop(limits(c)) })),
    SandboxPause: (c) => on(c, async (s) => ({ sandbox: await s.pause(limits(c)) })),
    SandboxResume: (c) => on(c, async (s) => ({ sandbox: await s.resume(limits(c)) })),
    SandboxDelete: (c) =>
      on(c, async (s) => {
        await s.delete(c.request.force ?? false, limits(c));
        return { id: c.params.sid };
      }),
    SandboxOnlineCpuMem: (c) =>
      on(c, async (s) => {
        await s.onlineCpuMem(c.request.cpus ?? 0, limits(c));
        return {};
      }),
    ContainerCreate: (c) => on(c, async (s) => ({ container: await s.createContainer(normalizeContainerSpec(c.request.container, 'container', defaults.containers, senderOfChange(defaults.containers)), limits(c)) })),
    ContainerStatus: (c) => on(c, async (s) => ({ container: s.containerStatus(c.params.cid) })),
    ContainerStart: (c) => on(c, async (s) => ({ container: await s.startContainer(c.params.cid, limits(c)) })),
    ContainerStop: (c) => on(c, async (s) => ({ container: await s.stopContainer(c.params.cid, limits(c)) })),
    ContainerPause: (c) => on(c, async (s) => ({ container: await s.pauseContainer(c.params.cid, limits(c)) })),
    ContainerResume: (c) => on(c, async (s) => ({ container: await s.resumeContainer(c.params.cid, limits(c)) })),
    ContainerKill: (c) =>
      on(c, async (s) => {
        await s.killContainer(c.params.cid, c.request.signal ?? 15, c.request.all ?? false, limits(c));
        return {};
      }),
    ContainerDelete: (c) =>
      on(c, async (s) => {
        await s.deleteContainer(c.params.cid, c.request.force ?? false, limits(c));
        return { id: c.params.cid };
      }),
    ContainerExec: (c) => on(c, (s) => s.exec(c.params.cid, c.request, limits(c))),
    ContainerPs: (c) => on(c, (s) => s.processList(c.params.cid, c.request, limits(c))),
    ContainerWait: (c) => on(c, (s) => s.wait(c.params.cid, c.request, limits(c))),
    ContainerLogs: (c) => on(c, (s) => s.logs(c.params.cid, c.request)),
    ContainerStdin: (c) =>
      on(c, async (s) => {
        await s.stdin(c.params.cid, c.request, limits(c));
        return {};
      }),
    ContainerResize: (c) =>
      on(c, async (s) => {
        await s.resize(c.params.cid, c.request, limits(c));
        return {};
      }),
    ContainerStats: (c) => on(c, async (s) => ({ stats: await s.stats(c.params.cid, limits(c)) })),
  };
}
