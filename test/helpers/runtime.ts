// A runtime host plus a client connection on a test server, and a request helper that
// returns decoded replies.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { connectBus } from '../../bus/connection.js';
import { decodeTrusted, encode } from '../../bus/codec.js';
import { RuntimeHost, type HostOptions } from '../../runtime/host.js';
import { readEvents } from '../../bus/event-reader.js';
import type * as Bus from '../../bus/messages.gen.js';
import { afterAll, beforeAll } from 'vitest';
import { startTestServer, type TestServer } from './nats.js';
import '../../actors/install-drivers.js';

export const silentLog = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export interface Reply {
  ok: boolean;
  error?: { code: string; message: string; state?: string };
  [key: string]: unknown;
}

export class Client {
  constructor(readonly nc: NatsConnection) {}

  /** Connects with a `.creds` file (a role's), or anonymously without one. */
  static async connect(servers: string | string[], creds?: string): Promise<Client> {
    return new Client(await connectBus({ servers, creds, name: 'vc-test-client' }));
  }

  /** Sends a request; `body` may be raw bytes (for malformed payloads) or a value. */
  async request(subject: string, body: unknown = {}, timeout = 20_000): Promise<Reply> {
    const data = body instanceof Uint8Array ? body : encode(body);
    const msg = await this.nc.request(subject, data, { timeout });
    return decodeTrusted<Reply>(msg.data);
  }

  async close(): Promise<void> {
    await this.nc.drain().catch(() => {});
  }
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
      await Promise.all([...host.registry.values()].map((s) => s.delete(true).catch(() => {})));
      await host.stop();
      rmSync(runRoot, { recursive: true, force: true });
    },
  };
}

export interface RuntimeContext {
  server: TestServer;
  host: TestHost;
  client: Client;
  /** Sends a request and returns the reply, failing the test on an error reply. */
  ok<T = Record<string, unknown>>(subject: string, body?: unknown): Promise<T>;
  /** Every stored event of a sandbox, in order. */
  eventsOf(sandboxId: string): Promise<Bus.Event[]>;
}

/**
 * One nats-server, one runtime host and one client for a test file, started before
 * its tests and stopped after them. The fields are filled in once beforeAll ran.
 */
export function useRuntime(opts: Partial<HostOptions> = {}): RuntimeContext {
  const ctx = {
    async ok<T>(subject: string, body: unknown = {}): Promise<T> {
      const reply = await ctx.client.request(subject, body, 30_000);
      if (!reply.ok) throw new Error(`${subject}: ${reply.error?.code}: ${reply.error?.message}`);
      return reply as T;
    },
    async eventsOf(sandboxId: string): Promise<Bus.Event[]> {
      const out: Bus.Event[] = [];
      for await (const e of readEvents(ctx.client.nc, { sandboxId })) out.push(e.event);
      return out;
    },
  } as RuntimeContext;
  beforeAll(async () => {
    ctx.server = await startTestServer();
    ctx.host = await startTestHost(ctx.server.url, { ...hostAuth(ctx.server), ...opts });
    ctx.client = await Client.connect(ctx.server.url, ctx.server.auth?.operator);
  });
  afterAll(async () => {
    await ctx.client?.close();
    await ctx.host?.stop();
    await ctx.server?.dispose();
  });
  return ctx;
}
