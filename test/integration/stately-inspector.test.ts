// The opt-in Stately inspector hook: a host given VC_STATELY_INSPECT=<ws url> sends its
// actors' inspection events, in @statelyai/inspect's format, to that relay (here a
// WebSocket server on loopback standing in for the package's relay), without specs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { pino } from 'pino';
import type { VcClient } from '../../bus/client.js';
import { statelyInspector, type StatelyHook } from '../../runtime/stately-inspector.js';
import { connectClient, hostAuth, startTestHost, type TestHost } from '../helpers/runtime.js';
import { startTestServer, type TestServer } from '../helpers/nats.js';

let server: TestServer;
let host: TestHost;
let client: VcClient;
let relay: WebSocketServer;
let hook: StatelyHook | undefined;
const received: Array<{ type: string; sessionId?: string; snapshot?: { value?: unknown; context?: Record<string, unknown> } }> = [];

beforeAll(async () => {
  relay = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => relay.once('listening', r));
  relay.on('connection', (ws) => ws.on('message', (data) => received.push(JSON.parse(data.toString()))));
  const port = (relay.address() as { port: number }).port;
  hook = await statelyInspector(`ws://127.0.0.1:${port}`, pino({ level: 'silent' }));
  server = await startTestServer();
  host = await startTestHost(server.url, { host: 'stately', observe: hook!.observe, ...hostAuth(server) });
  client = await connectClient(server.url, server.auth!.operator);
});

afterAll(async () => {
  await client?.close();
  await host?.stop();
  hook?.stop();
  await server?.dispose();
  await new Promise((r) => relay?.close(r));
});

describe('Stately inspector hook', () => {
  it('is off unless asked for', async () => {
    expect(await statelyInspector(undefined, pino({ level: 'silent' }))).toBeUndefined();
    expect(await statelyInspector('0', pino({ level: 'silent' }))).toBeUndefined();
    await expect(statelyInspector('http://x', pino({ level: 'silent' }))).rejects.toThrow(/ws:\/\//);
  });

  it("sends the sandbox actors' snapshots to the relay, without their specs", async () => {
    await client.call('SandboxCreate', {}, {
      sandbox: { id: 'st1', containers: [{ id: 'c1', args: ['sleep', '1'], env: ['SECRET=hunter2'] }] },
      start: true,
    });
    await expect
      .poll(() => received.filter((e) => e.type === '@xstate.snapshot').map((e) => e.snapshot?.value))
      .toEqual(expect.arrayContaining(['running', { watching: 'waiting' }]));
    expect(received.some((e) => e.type === '@xstate.actor')).toBe(true);
    expect(JSON.stringify(received)).not.toContain('hunter2');
    const contexts = received.filter((e) => e.snapshot?.context?.spec).map((e) => e.snapshot!.context!.spec);
    expect(contexts.length).toBeGreaterThan(0);
    for (const spec of contexts) expect(Object.keys(spec as object)).toEqual(['id']);
    await client.call('SandboxDelete', { sid: 'st1' }, { force: true });
  });
});
