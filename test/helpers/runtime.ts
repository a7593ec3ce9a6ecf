// A runtime host plus a client on a test server. The client is the project's one bus
// client (bus/client.ts): tests call commands by name from the command table.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { VcClient } from '../../bus/client.js';
import type { CommandName, CommandParams, CommandReply, CommandRequest } from '../../bus/commands.js';
import { RuntimeHost, type HostOptions } from '../../runtime/host.js';
import type * as Bus from '../../bus/messages.gen.js';
import { afterAll, beforeAll } from 'vitest';
import { startTestServer, type TestServer } from './nats.js';
import '../../actors/install-drivers.js';

export const silentLog = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/**
 * The test client: the bus client with a test's name and a 30 s reply timeout, with a
 * role's `.creds` file (or anonymously without one).
 */
export function connectClient(servers: string | string[], creds?: string): Promise<VcClient> {
  return VcClient.connect({ servers, creds, name: 'vc-test-client', timeoutMs: 30_000 });
}

/** What a host on this server connects with: the host credentials and the signing keys. */
export const hostAuth = (server: TestServer): Partial<HostOptions> =>
  server.auth ? { creds: server.auth.host, authority: server.auth.authority } : {};

export interface TestHost {
  host: RuntimeHost;
  runRoot: string;
  stop(): Promise<void>;
}

export async function startTestHost(servers: string | string[], opts: Partial<HostOptions> = {}): Promise<TestHost> {
  const runRoot = mkdtempSync(join(tmpdir(), 'vc-run-'));
  const host = await RuntimeHost.start({ servers, host: opts.host ?? 'test-host', runRoot, log: silentLog, ...opts });
  return {
    host,
    runRoot,
    async stop() {
      // A test that failed half-way must not leave guests running on the machine.
      await Promise.all([...host.registry.values()].map((s) => s.commands.exclusive(() => s.commands.delete(true)).catch(() => {})));
      await host.stop();
      rmSync(runRoot, { recursive: true, force: true });
    },
  };
}

export interface RuntimeContext {
  server: TestServer;
  host: TestHost;
  client: VcClient;
  /** Runs a command and returns its reply; an error reply fails the test. */
  ok<C extends CommandName>(name: C, params: CommandParams<C>, request?: CommandRequest<C>): Promise<CommandReply<C>>;
  /** Every stored event of a sandbox, in order. */
  eventsOf(sandboxId: string): Promise<Bus.Event[]>;
}

/**
 * One nats-server, one runtime host and one client for a test file, started before
 * its tests and stopped after them. The fields are filled in once beforeAll ran.
 */
export function useRuntime(opts: Partial<HostOptions> = {}): RuntimeContext {
  const ctx = {
    ok: (name, params, request) => ctx.client.call(name, params, request),
    async eventsOf(sandboxId: string): Promise<Bus.Event[]> {
      const out: Bus.Event[] = [];
      for await (const e of ctx.client.events({ sandboxId })) out.push(e.event);
      return out;
    },
  } as RuntimeContext;
  beforeAll(async () => {
    ctx.server = await startTestServer();
    ctx.host = await startTestHost(ctx.server.url, { ...hostAuth(ctx.server), ...opts });
    ctx.client = await connectClient(ctx.server.url, ctx.server.auth?.operator);
  });
  afterAll(async () => {
    await ctx.client?.close();
    await ctx.host?.stop();
    await ctx.server?.dispose();
  });
  return ctx;
}
