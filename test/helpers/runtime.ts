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
import '../../actors/install-drivers.js';

export const silentLog = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export interface Reply {
  ok: boolean;
  error?: { code: string; message: string; state?: string };
  [key: string]: unknown;
}

export class Client {
  constructor(readonly nc: NatsConnection) {}

  static async connect(servers: string | string[]): Promise<Client> {
    return new Client(await connectBus({ servers, name: 'vc-test-client' }));
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
      await host.stop();
      rmSync(runRoot, { recursive: true, force: true });
    },
  };
}
