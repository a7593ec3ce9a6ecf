// What authentication costs a command: status round trips p50 through a server with
// credentials and roles (operator client in the clients' account, host in the hosts'
// account, the request crossing the service import) against the same through a server
// without authentication, in one run, rounds alternating so drift hits both alike.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startNatsServer, type NatsServer } from '../runtime/nats-server.js';
import { RuntimeHost } from '../runtime/host.js';
import { VcClient } from '../bus/client.js';
import { authFiles, ensureAuthority } from '../bus/auth-files.js';
import { serverAuthConfig } from '../bus/credentials.js';
import { round, summarize, type Latency } from './stats.js';

export interface AuthFigures {
  rounds: number;
  samplesPerRound: number;
  withoutAuth: Latency;
  withAuth: Latency & { ratioToWithout: number };
}

interface Side {
  server: NatsServer;
  host: RuntimeHost;
  client: VcClient;
}

async function side(dir: string, auth: boolean): Promise<Side> {
  const authDir = join(dir, 'auth');
  const authority = auth ? (await ensureAuthority(authDir)).authority : undefined;
  const server = await startNatsServer({ storeDir: join(dir, 'nats'), auth: authority && serverAuthConfig(authority) });
  const host = await RuntimeHost.start({
    servers: server.url, host: auth ? 'bench-auth' : 'bench-open', runRoot: join(dir, 'run'), log: pino({ level: 'silent' }),
    ...(authority ? { creds: authFiles(authDir).creds('host'), authority } : {}),
  });
  const client = await VcClient.connect({ servers: server.url, name: 'bench-auth-client', ...(auth ? { creds: authFiles(authDir).creds('operator') } : {}) });
  return { server, host, client };
}

async function samples(client: VcClient, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await client.call('SandboxStatus', { sid: 'bench-auth' });
    out.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return out;
}

export async function benchAuth(opts: { rounds: number; samples: number }): Promise<AuthFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'vc-bench-auth-'));
  const sides: Side[] = [];
  try {
    const open = await side(join(dir, 'open'), false);
    sides.push(open);
    const authed = await side(join(dir, 'auth'), true);
    sides.push(authed);
    for (const s of sides) {
      await s.client.call('SandboxCreate', {}, { sandbox: { id: 'bench-auth' }, start: true });
      await samples(s.client, 100); // warm-up
    }
    const without: number[] = [];
    const withAuth: number[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      without.push(...(await samples(open.client, opts.samples)));
      withAuth.push(...(await samples(authed.client, opts.samples)));
    }
    const a = summarize(withAuth);
    const b = summarize(without);
    return { rounds: opts.rounds, samplesPerRound: opts.samples, withoutAuth: b, withAuth: { ...a, ratioToWithout: round(a.p50 / b.p50, 2) } };
  } finally {
    for (const s of sides) {
      await s.client.close();
      await s.host.stop();
      await s.server.stop();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
