// The host end of a VM's kata channel (KataBridge) against the guest's end as the VM has
// it — a yamux session on the port whose streams its gRPC server takes as connections
// (guest/kata-agent/serial-bridge.ts) — with a unix socket in place of qemu's
// virtio-serial port (no VM: what is checked is the host end). A VM that answered holds one stream to its agent ready before
// any sandbox comes; the first driver connection takes it, a connection that only checks
// that the socket accepts reaches nothing in the guest, and the next spare stream carries
// nothing of the connection before it.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server as GrpcServer, ServerCredentials } from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KataBridge } from '../../actors/backends/vm/channels.js';
import { KataConnection } from '../../actors/agents/kata-client.js';
import { healthService, ServingStatus } from '../../protos/kata/index.js';
import { Session, type YamuxStream } from '../../protos/yamux/session.js';

interface GuestStream {
  stream: YamuxStream;
  /** Bytes the host sent on it. */
  received: number;
  open: boolean;
}

async function until(what: string, test: () => boolean): Promise<void> {
  // Bounded by the test's own timeout; the condition, not a duration, is what is checked.
  while (!test()) await new Promise((r) => setTimeout(r, 5));
  expect(test(), what).toBe(true);
}

describe('kata channel of a VM (host end)', () => {
  let dir: string;
  let agent: GrpcServer;
  let port: Server;
  let bridge: KataBridge;
  const streams: GuestStream[] = [];
  const open = () => streams.filter((s) => s.open);
  const sandboxSocket = () => join(dir, 'sandbox', 'kata.sock');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vc-channel-'));
    mkdirSync(join(dir, 'sandbox'));
    agent = new GrpcServer();
    agent.addService(healthService, {
      Check: (_call: unknown, cb: (err: null, res: unknown) => void) => cb(null, { status: ServingStatus.SERVING }),
      Version: (_call: unknown, cb: (err: null, res: unknown) => void) => cb(null, { grpc_version: 'test', agent_version: 'test' }),
    });
    const injector = agent.createConnectionInjector(ServerCredentials.createInsecure());
    // qemu's end of the port: the guest's yamux session (guest/kata-agent/serial-bridge.ts) on the other side.
    port = createServer((socket: Socket) => {
      new Session(socket, {
        client: false,
        onStream: (stream) => {
          const entry: GuestStream = { stream, received: 0, open: true };
          streams.push(entry);
          stream.on('data', (d: Buffer) => (entry.received += d.length));
          stream.on('close', () => (entry.open = false));
          injector.injectConnection(stream);
        },
      });
    });
    await new Promise<void>((r) => port.listen(join(dir, 'agent.serial'), r));
    const exited = new Promise<never>(() => {});
    bridge = new KataBridge(join(dir, 'agent.serial'), join(dir, 'kata.sock'), pino({ level: 'silent' }), () => false, exited);
    await bridge.ready(Date.now() + 20_000);
  });

  afterAll(async () => {
    bridge?.close();
    port?.close();
    agent?.forceShutdown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('an answering VM holds one stream to its agent before any sandbox has it', async () => {
    // Once the readiness check's own connection has gone, the spare is what stays.
    await until('the readiness check done', () => streams.some((s) => s.received > 0) && streams.every((s) => !s.open || s.received === 0));
    expect(open()).toHaveLength(1);
    expect(open()[0]!.received).toBe(0);
  });

  it("a sandbox's first call goes over that stream; a connection that only checks the socket reaches nothing in the guest", async () => {
    const spare = open()[0]!;
    const before = streams.length;
    await bridge.attach({ grpcAddress: `unix://${sandboxSocket()}` });
    const settled = bridge.settled(600_000);
    // A dialler checking that the socket accepts, as KataConnection.ready does first.
    await new Promise<void>((resolve, reject) => {
      const probe = connect(sandboxSocket(), () => {
        probe.end();
        resolve();
      });
      probe.on('error', reject);
    });
    const conn = new KataConnection(`unix://${sandboxSocket()}`, 10_000);
    await conn.ready();
    expect(await conn.health('Check', { service: '' })).toMatchObject({ status: ServingStatus.SERVING });
    expect(streams.length).toBe(before);
    expect(spare.received).toBeGreaterThan(0);
    conn.close();
    // The call is answered and its connection closed: the sandbox is set up, the pool may refill.
    await settled;
    await until('the spare stream of that connection closed', () => !spare.open);
  });

  it('the next spare carries nothing of the connection before it, and the next driver connection takes it', async () => {
    await until('a new spare stream', () => open().length > 0);
    expect(open()).toHaveLength(1);
    const next = open()[0]!;
    expect(next.received).toBe(0);
    const before = streams.length;
    const conn = new KataConnection(`unix://${sandboxSocket()}`, 10_000);
    await conn.ready();
    expect(await conn.health('Check', { service: '' })).toMatchObject({ status: ServingStatus.SERVING });
    expect(streams.length).toBe(before);
    expect(next.received).toBeGreaterThan(0);
    conn.close();
  });
});
