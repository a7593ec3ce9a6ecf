// A runtime host that stops answering (SIGSTOP) or dies (SIGKILL): how soon a command
// about its sandbox answers Unavailable, and what commands for the other host's sandbox
// cost meanwhile. Two hosts on one nats-server with credentials (alpha in this process,
// beta a process of its own, counted lost only after a minute, so the figures are the
// forward receipt's and the client's second try's, not the lost verdict's); the client
// sends through the queue group as the CLI does. Beside: raw NATS request/reply, and a
// status answered by alpha itself and one alpha forwards to beta (the receipt's cost).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { RuntimeHost } from '../runtime/host.js';
import { CommandError, VcClient } from '../bus/client.js';
import { connectBus } from '../bus/connection.js';
import { encode } from '../bus/codec.js';
import { subjectOf } from '../bus/commands.js';
import { subjects } from '../bus/subjects.js';
import { startTestServer } from '../test/helpers/nats.js';
import { startHostProcess, type HostProcess } from '../test/helpers/host-process.js';
import { measure, summarize, type Latency } from './stats.js';

const LOST_AFTER_MS = 60_000;
const TIMEOUT_MS = 30_000;

export interface HostLossFigures {
  samples: number;
  commandTimeoutMs: number;
  rawNats: Latency;
  /** Both hosts healthy: a status alpha answers itself, one it forwards to beta (with the receipt). */
  statusLocal: Latency;
  statusForwarded: Latency;
  /** From beta's SIGSTOP to the answer (Unavailable) of a status of its sandbox, through the queue group. */
  stoppedOwner: Latency;
  /** Same, sent to alpha itself: the forward receipt's wait alone. */
  stoppedOwnerViaOther: Latency;
  /** A status of alpha's sandbox through the queue group while beta is stopped (ok). */
  otherHostWhileStopped: Latency;
  /** From beta's SIGKILL to the answer (Unavailable) of a status of its sandbox. */
  killedOwner: Latency;
  /** Answers that were not Unavailable (a DeadlineExceeded would be a hang). */
  wrongAnswers: Record<string, number>;
}

export async function benchHostLoss(opts: { samples: number; healthySamples: number }): Promise<HostLossFigures> {
  const server = await startTestServer();
  const dir = mkdtempSync(join(tmpdir(), 'vc-bench-hostloss-'));
  let alpha: RuntimeHost | undefined;
  let beta: HostProcess | undefined;
  let stopped = false;
  const client = await VcClient.connect({ servers: server.url, creds: server.auth!.operator, timeoutMs: TIMEOUT_MS });
  const wrong: Record<string, number> = {};
  const startBeta = () =>
    startHostProcess(client, { servers: server.url, host: 'beta', stateDir: join(dir, 'beta'), creds: server.auth!.host, env: { VC_HOST_LOST_AFTER_MS: String(LOST_AFTER_MS), VC_METRICS_ADDR: 'off' } });
  /** Time to an Unavailable answer; anything else is counted wrong. */
  const unavailableAfter = async (t0: number, ask: () => Promise<unknown>): Promise<number> => {
    try {
      await ask();
      wrong.ok = (wrong.ok ?? 0) + 1;
    } catch (err) {
      const code = err instanceof CommandError ? err.code : 'other';
      if (code !== 'Unavailable') wrong[code] = (wrong[code] ?? 0) + 1;
    }
    return performance.now() - t0;
  };
  const viaAlpha = async (sid: string) => {
    const reply = await client.requestSubject(subjects.hostVia('alpha', subjectOf('SandboxStatus', { sid })), encode({}), { timeoutMs: TIMEOUT_MS });
    if (!reply.ok) throw new CommandError(reply.error?.code ?? 'Internal', reply.error?.message ?? '');
  };
  const betaServes = async () => {
    for (const until = performance.now() + 60_000; performance.now() < until; await new Promise((r) => setTimeout(r, 50))) {
      const r = await client.request('SandboxStatus', { sid: 'b1' }, undefined, { timeoutMs: 3_000 }).catch(() => undefined);
      if (r?.ok) return;
    }
    throw new Error('beta did not serve b1 again');
  };
  try {
    alpha = await RuntimeHost.start({ servers: server.url, host: 'alpha', creds: server.auth!.host, runRoot: join(dir, 'alpha'), log: pino({ level: 'silent' }), hostLostAfterMs: LOST_AFTER_MS });
    beta = await startBeta();
    await client.call('HostSandboxCreate', { host: 'alpha' }, { sandbox: { id: 'a1' }, start: true });
    await client.call('HostSandboxCreate', { host: 'beta' }, { sandbox: { id: 'b1' }, start: true });

    // Raw NATS request/reply between two host connections on the same server.
    const echo = await connectBus({ servers: server.url, creds: server.auth!.host });
    const ask = await connectBus({ servers: server.url, creds: server.auth!.host });
    const sub = echo.subscribe('_INBOX.bench-echo', { callback: (_e, m) => { m.respond(m.data); } });
    await echo.flush();
    const rawNats = await measure(opts.healthySamples, () => ask.request('_INBOX.bench-echo', new Uint8Array(8), { timeout: 2000 }));
    sub.unsubscribe();
    await echo.close();
    await ask.close();
    const statusLocal = await measure(opts.healthySamples, () => viaAlpha('a1'));
    const statusForwarded = await measure(opts.healthySamples, () => viaAlpha('b1'));

    const stoppedOwner: number[] = [];
    const stoppedVia: number[] = [];
    const other: number[] = [];
    for (let i = 0; i < opts.samples; i++) {
      process.kill(beta.pid, 'SIGSTOP');
      stopped = true;
      const t0 = performance.now();
      stoppedOwner.push(await unavailableAfter(t0, () => client.call('SandboxStatus', { sid: 'b1' })));
      const t1 = performance.now();
      stoppedVia.push(await unavailableAfter(t1, () => viaAlpha('b1')));
      const t2 = performance.now();
      await client.call('SandboxStatus', { sid: 'a1' });
      other.push(performance.now() - t2);
      process.kill(beta.pid, 'SIGCONT');
      stopped = false;
      await betaServes();
    }
    const killed: number[] = [];
    for (let i = 0; i < Math.max(1, Math.ceil(opts.samples / 2)); i++) {
      await beta.kill9();
      const t0 = performance.now();
      killed.push(await unavailableAfter(t0, () => client.call('SandboxStatus', { sid: 'b1' })));
      beta = await startBeta();
      await betaServes();
    }
    return {
      samples: opts.samples,
      commandTimeoutMs: TIMEOUT_MS,
      rawNats,
      statusLocal,
      statusForwarded,
      stoppedOwner: summarize(stoppedOwner),
      stoppedOwnerViaOther: summarize(stoppedVia),
      otherHostWhileStopped: summarize(other),
      killedOwner: summarize(killed),
      wrongAnswers: wrong,
    };
  } finally {
    if (stopped && beta) process.kill(beta.pid, 'SIGCONT');
    await client.call('SandboxDelete', { sid: 'b1' }, { force: true }).catch(() => {});
    await client.call('SandboxDelete', { sid: 'a1' }, { force: true }).catch(() => {});
    await beta?.stop().catch(() => {});
    await client.close();
    await alpha?.stop().catch(() => {});
    await server.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function hostLossTable(h: HostLossFigures | undefined): string[] {
  if (!h) return [];
  const row = (name: string, l: Latency, note = '') => `| ${name} | ${l.n} | ${l.p50} | ${l.p99} | ${note} |`;
  const wrong = Object.entries(h.wrongAnswers).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  return [
    '## A runtime host stopped (SIGSTOP) or killed (SIGKILL)',
    '',
    `Two hosts on one nats-server with credentials, the client sending through the queue group with a ${h.commandTimeoutMs} ms timeout; beta would be counted lost only after a minute, so these are the forward receipt's and the client's second try's figures. Answers other than Unavailable: ${wrong}.`,
    '',
    '| round trip | n | p50 ms | p99 ms | note |',
    '|---|---|---|---|---|',
    row('raw NATS request/reply', h.rawNats),
    row('status, answered by the host that took it', h.statusLocal, 'both healthy'),
    row('status, forwarded to the owner (its receipt: one more message)', h.statusForwarded, 'both healthy'),
    row("beta's SIGSTOP → Unavailable for its sandbox's status, through the queue group", h.stoppedOwner, 'target: about 1 s'),
    row('… the same, sent to the healthy host', h.stoppedOwnerViaOther, 'the receipt wait'),
    row("status of the healthy host's sandbox while beta is stopped", h.otherHostWhileStopped, 'ok answers'),
    row("beta's SIGKILL → Unavailable for its sandbox's status", h.killedOwner, 'nobody takes the forward'),
    '',
  ];
}
