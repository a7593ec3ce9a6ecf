// The command table is the contract: every command is an ADR-32 endpoint of every host,
// with its subject and its request and reply types, and a request on each command's
// subject reaches that command's handler, with its parameters and decoded body.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandService, type CommandCall, type CommandHandlers } from '../../bus/command-service.js';
import { commandTable, endpointName, routeOf, type CommandName } from '../../bus/commands.js';
import { commandFilter, commandSubject } from '../../bus/subjects.js';
import type { SandboxStore } from '../../bus/store.js';
import { connectClient, hostAuth, silentLog, startTestHost, type TestHost } from '../helpers/runtime.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import type { VcClient } from '../../bus/client.js';

let server: TestServer;
let host: TestHost;
let client: VcClient;

beforeAll(async () => {
  server = await startTestServer();
  host = await startTestHost(server.url, { host: 'contract', ...hostAuth(server) });
  client = await connectClient(server.url, server.auth!.operator);
});

afterAll(async () => {
  await client?.close();
  await host?.stop();
  await server?.dispose();
});

const paramsFor = (params: readonly string[]) =>
  Object.fromEntries(params.map((p) => [p, p === 'host' ? 'solo' : p === 'sid' ? 'box-1' : 'ctr-1'])) as Record<string, string>;

describe('the command table', () => {
  it('is what $SRV.INFO lists: one endpoint per command, with its subject and types', async () => {
    const [info] = await client.discover('INFO');
    const endpoints = info!.endpoints as Array<{ name: string; subject: string; queue_group: string; metadata: Record<string, string> }>;
    expect(endpoints.map((e) => e.name)).toEqual(commandTable.map(endpointName));
    for (const def of commandTable) {
      const e = endpoints.find((x) => x.name === endpointName(def))!;
      const scoped = routeOf(def) === 'host';
      expect(e).toEqual({
        name: endpointName(def),
        subject: scoped ? commandSubject(def.subject, { host: 'contract' }) : commandFilter(def.subject),
        queue_group: scoped ? '' : 'vc-hosts',
        metadata: { request: def.request, reply: def.reply, changes_state: String(def.changesState) },
      });
    }
    expect(info!.metadata).toEqual({ host: 'contract', inspect: 'false' });
  });

  it("routes a request on each command's subject to that command's handler", async () => {
    const reached: Array<CommandCall<CommandName>> = [];
    const record = async (call: CommandCall<CommandName>) => {
      reached.push(call);
      return {};
    };
    const handlers = Object.fromEntries(commandTable.map((def) => [def.name, record])) as unknown as CommandHandlers;
    const noStore = {} as SandboxStore; // every sandbox is "owned" below: nothing is forwarded
    // A server of its own, where this service is the only one answering; without
    // authentication, as one connection both serves and sends (roles are tested in security.test.ts).
    const own = await startTestServer({ auth: false });
    const ownClient = await connectClient(own.url);
    const service = new CommandService(ownClient.nc, handlers, noStore, { host: 'solo', owns: () => true, defaultDeadlineMs: 5_000 }, silentLog);
    service.start();
    try {
      for (const def of commandTable) {
        const params = paramsFor(def.params);
        const reply = await ownClient.requestSubject(commandSubject(def.subject, params), new TextEncoder().encode('{}'));
        expect(reply, def.name).toEqual({ ok: true });
        const got = reached.at(-1);
        expect(got?.name).toBe(def.name);
        expect(got, def.name).toBeDefined();
        expect(got!.params).toEqual(params);
        expect(got!.request).toEqual({});
        expect(got!.deadline).toBeGreaterThan(Date.now());
      }
      expect(reached).toHaveLength(commandTable.length);
    } finally {
      await service.stop();
      await ownClient.close();
      await own.dispose();
    }
  });
});
