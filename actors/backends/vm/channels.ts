// The host end of a VM's agent channels. qemu listens on one unix socket per virtio-serial
// port; the runtime holds that connection for the VM's whole life (a port has one host at a
// time, and the guest greets only a new one) and offers the drivers the sockets they dial:
//
//   kata: one port, yamux as kata 1.x: each connection to the sandbox's kata.sock becomes
//         a yamux stream, which the guest joins to its agent (the kata-proxy arrangement).
//   hyperstart: two ports, ctl and tty, as cc-proxy held them: a driver connecting to
//         hyper.sock gets a READY of its own, then whole frames both ways; replies owed to
//         a driver that went away are dropped, exits seen while none is attached are kept.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { deadlineExceeded, unavailable } from '../../../bus/errors.js';
import { Code } from '../../../protos/hyperstart/codes.js';
import { CtlDecoder, encodeCtl, type CtlFrame } from '../../../protos/hyperstart/frame.js';
import { Session, type YamuxStream } from '../../../protos/yamux/session.js';
import type { GuestEndpoint } from '../../agents/agent.js';
import { KataConnection } from '../../agents/kata-client.js';

/** sun_path holds 108 bytes including the NUL. */
const MAX_SOCKET_PATH = 107;
const BIG_FRAME = 16 * 1024 * 1024;
const HELD_EVENTS = 4096;

export interface AgentChannel {
  /** Resolves once the guest agent answers; rejects at the deadline. */
  ready(deadline: number): Promise<void>;
  /** Offers the driver its endpoint (unix sockets); a second call moves it. */
  attach(endpoint: GuestEndpoint): Promise<GuestEndpoint>;
  /**
   * Resolves once the first driver call since the last attach has been answered (kata: its
   * connection closed; hyperstart: its reply relayed), or after `timeoutMs`: the moment a
   * sandbox that took a pool VM is set up in it.
   */
  settled(timeoutMs: number): Promise<void>;
  close(): void;
}

/** A promise resolved by the first of `arm`'s callback and a timer (which keeps nothing alive). */
function firstOf(timeoutMs: number, arm: (done: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    arm(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * `work`'s outcome, or `expired()` once the deadline passes. The timer goes with the
 * outcome: a boot deadline is minutes, and a timer left behind would hold an embedding
 * process (a test, the bench) open that long after its host stopped.
 */
function byDeadline<T>(work: Promise<T>, deadline: number, expired: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(expired()), Math.max(0, deadline - Date.now()))));
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

export function checkSocketPath(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) throw unavailable(`socket path ${path} is longer than ${MAX_SOCKET_PATH} bytes: use a shorter state or run directory`);
}

/** Connects to a socket qemu is about to create, until the deadline. */
async function dialQemu(path: string, deadline: number, gone: () => boolean): Promise<Socket> {
  for (;;) {
    const socket = await new Promise<Socket | undefined>((resolve) => {
      const s = connect(path);
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (socket) return socket;
    if (gone()) throw unavailable('qemu exited before its channel was up');
    if (Date.now() >= deadline) throw deadlineExceeded(`qemu's channel socket ${path} did not appear in time`);
    await sleep(20);
  }
}

/** A unix socket server in place of a stale one; it does not keep the runtime alive. */
function listen(path: string, accept: (s: Socket) => void): Promise<Server> {
  checkSocketPath(path);
  rmSync(path, { force: true });
  const server = createServer(accept);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.unref();
      resolve(server);
    });
  });
}

function closeServer(server: Server | undefined, path: string | undefined): void {
  server?.close();
  if (path) rmSync(path, { force: true });
}

const unixPath = (address: string) => address.replace(/^unix:(\/\/)?/, '');

/** How long a closed qemu socket waits for qemu's exit before the drivers are cut off. */
const EXIT_GRACE_MS = 1000;

/**
 * qemu's exit is the guest's exit: when its socket closes, the drivers' connections are
 * cut only once the exit has been reported (or after a grace period), so that a killed VM
 * fails its sandbox as exited, not as unreachable.
 */
function afterExit(vmExited: Promise<unknown>, cut: () => void): void {
  void Promise.race([vmExited, sleep(EXIT_GRACE_MS)]).then(cut);
}

// ---- kata ------------------------------------------------------------------------------

export class KataBridge implements AgentChannel {
  private session: Session | undefined;
  private server: Server | undefined;
  private path: string | undefined;
  private readonly conns = new Set<Socket>();
  private closed = false;
  /**
   * A stream opened ahead (as Kata's VM factory readies a VM before anyone asks): its
   * guest end is already joined to the agent, whose HTTP/2 greeting waits in it. The next
   * driver connection takes it and skips the stream's set-up in the guest (a yamux SYN, a
   * connection to the agent's socket, a new HTTP/2 session: tens of ms under TCG). It
   * carries nothing of a sandbox: its first bytes are the driver's.
   */
  private spare: YamuxStream | undefined;
  private onSettled: (() => void) | undefined;

  constructor(
    private readonly qemuSocket: string,
    /** Where the bridge listens before any sandbox has the VM (for the readiness check). */
    private readonly ownSocket: string,
    private readonly log: Logger,
    private readonly gone: () => boolean,
    private readonly vmExited: Promise<unknown>,
  ) {}

  async ready(deadline: number): Promise<void> {
    const socket = await dialQemu(this.qemuSocket, deadline, this.gone);
    socket.unref();
    this.session = new Session(socket, { client: true });
    this.session.onClose((err) => {
      if (!this.closed) this.log.debug({ err }, 'vm: kata channel closed');
      afterExit(this.vmExited, () => {
        for (const c of this.conns) c.destroy();
      });
    });
    await this.attach({ grpcAddress: `unix://${this.ownSocket}` });
    // Health.Check through the bridge, the way the driver will call: the agent answers.
    for (;;) {
      if (this.gone()) throw unavailable('the VM exited before its kata agent answered');
      const left = deadline - Date.now();
      if (left <= 0) throw deadlineExceeded('the kata agent in the VM did not answer in time');
      const conn = new KataConnection(`unix://${this.ownSocket}`, Math.min(left, 10_000));
      try {
        await conn.ready();
        await conn.health('Check', { service: '' }, Math.min(deadline - Date.now(), 10_000));
        this.openSpare();
        return;
      } catch {
        await sleep(100);
      } finally {
        conn.close();
      }
    }
  }

  async attach(endpoint: GuestEndpoint): Promise<GuestEndpoint> {
    const address = endpoint.grpcAddress ?? '';
    if (!address.startsWith('unix:') && !address.startsWith('/')) throw unavailable(`a VM's kata agent is reached through a unix socket, not ${address}`);
    const path = unixPath(address);
    if (path !== this.path) {
      const server = await listen(path, (c) => this.accept(c));
      closeServer(this.server, this.path);
      this.server = server;
      this.path = path;
    }
    return { grpcAddress: `unix://${path}` };
  }

  settled(timeoutMs: number): Promise<void> {
    return firstOf(timeoutMs, (done) => (this.onSettled = done));
  }

  private openSpare(): void {
    const session = this.session;
    if (this.closed || this.spare || !session || session.isClosed) return;
    const stream = session.open();
    this.spare = stream;
    // The guest ends it when its agent cannot take the connection: the next dial opens its own.
    const drop = () => {
      if (this.spare === stream) this.spare = undefined;
    };
    stream.on('error', drop);
    stream.once('close', drop);
  }

  private takeSpare(): YamuxStream | undefined {
    const stream = this.spare;
    this.spare = undefined;
    return stream && !stream.destroyed ? stream : undefined;
  }

  /**
   * A driver connection reaches the guest with its first byte: one that only checks that
   * the socket accepts (and closes) costs the guest nothing.
   */
  private accept(conn: Socket): void {
    const session = this.session;
    if (!session || session.isClosed) {
      conn.destroy();
      return;
    }
    this.conns.add(conn);
    let stream: YamuxStream | undefined;
    let tookSpare = false;
    let ended = false;
    const done = () => {
      if (ended) return;
      ended = true;
      this.conns.delete(conn);
      conn.destroy();
      stream?.destroy();
      if (!stream) return;
      this.onSettled?.();
      this.onSettled = undefined;
      // The guest readies the next one while the host goes on with the answer it got.
      if (tookSpare) this.openSpare();
    };
    conn.on('error', done);
    conn.on('close', done);
    conn.once('data', (first: Buffer) => {
      if (session.isClosed) return done();
      const spare = this.takeSpare();
      tookSpare = !!spare;
      stream = spare ?? session.open();
      stream.on('error', done);
      stream.on('close', done);
      stream.write(first);
      conn.pipe(stream);
      stream.pipe(conn);
    });
  }

  close(): void {
    this.closed = true;
    closeServer(this.server, this.path);
    this.server = undefined;
    this.spare = undefined;
    this.session?.close();
    for (const c of this.conns) c.destroy();
  }
}

// ---- hyperstart ----------------------------------------------------------------------

type ReplyOwner = Socket | ((frame: CtlFrame) => void);

export class HyperstartRelay implements AgentChannel {
  private ctl: Socket | undefined;
  private tty: Socket | undefined;
  private client: Socket | undefined;
  private ttyClient: Socket | undefined;
  /** Whoever sent each command still unanswered, oldest first (replies come in order). */
  private readonly owners: ReplyOwner[] = [];
  private readonly held: Uint8Array[] = [];
  private servers: { ctl?: Server; tty?: Server; ctlPath?: string; ttyPath?: string } = {};
  private readyFrame: (() => void) | undefined;
  private onSettled: (() => void) | undefined;
  private closed = false;

  constructor(
    private readonly qemuCtl: string,
    private readonly qemuTty: string,
    private readonly log: Logger,
    private readonly gone: () => boolean,
    private readonly vmExited: Promise<unknown>,
  ) {}

  async ready(deadline: number): Promise<void> {
    const guestReady = new Promise<void>((resolve) => (this.readyFrame = resolve));
    this.ctl = await dialQemu(this.qemuCtl, deadline, this.gone);
    this.tty = await dialQemu(this.qemuTty, deadline, this.gone);
    for (const s of [this.ctl, this.tty]) {
      s.unref();
      s.on('error', () => {});
    }
    const decoder = new CtlDecoder(BIG_FRAME);
    this.ctl.on('data', (chunk: Buffer) => {
      let frames: CtlFrame[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        this.log.error({ err }, 'vm: bad hyperstart frame from the guest: closing its channel');
        this.ctl?.destroy();
        return;
      }
      for (const f of frames) this.fromGuest(f);
    });
    this.ctl.on('close', () => afterExit(this.vmExited, () => this.client?.destroy()));
    // Guest output waits in the guest while no driver reads it.
    this.tty.pause();
    this.tty.on('data', (chunk: Buffer) => {
      if (this.ttyClient && !this.ttyClient.write(chunk)) this.tty?.pause();
    });
    this.tty.on('close', () => afterExit(this.vmExited, () => this.ttyClient?.destroy()));

    const timeout = <T>(p: Promise<T>, what: string) => byDeadline(p, deadline, () => deadlineExceeded(`the hyperstart guest in the VM sent no ${what} in time`));
    await timeout(guestReady, 'READY');
    const ping = new Promise<CtlFrame>((resolve) => this.owners.push(resolve));
    this.ctl.write(encodeCtl(Code.PING));
    const answer = await timeout(ping, 'answer to PING');
    if (answer.code !== Code.ACK) throw unavailable('the hyperstart guest in the VM refused PING');
  }

  private fromGuest(frame: CtlFrame): void {
    switch (frame.code) {
      case Code.READY:
        // The guest greets each new host; the relay is its only one and greets drivers itself.
        this.readyFrame?.();
        this.readyFrame = undefined;
        return;
      case Code.ACK:
      case Code.ERROR: {
        const owner = this.owners.shift();
        if (typeof owner === 'function') owner(frame);
        else if (owner && owner === this.client && !owner.destroyed) {
          owner.write(encodeCtl(frame.code, frame.payload, BIG_FRAME));
          this.onSettled?.();
          this.onSettled = undefined;
        }
        return;
      }
      case Code.NEXT:
        if (this.client && !this.client.destroyed) this.client.write(encodeCtl(frame.code, frame.payload, BIG_FRAME));
        return;
      default: {
        const bytes = encodeCtl(frame.code, frame.payload, BIG_FRAME);
        if (this.client && !this.client.destroyed) this.client.write(bytes);
        else {
          this.held.push(bytes);
          if (this.held.length > HELD_EVENTS) this.held.shift();
        }
      }
    }
  }

  async attach(endpoint: GuestEndpoint): Promise<GuestEndpoint> {
    const ctlPath = endpoint.ctlSocket;
    const ttyPath = endpoint.ttySocket;
    if (!ctlPath || !ttyPath) throw unavailable('a hyperstart endpoint needs a ctl and a tty socket');
    const ctl = await listen(ctlPath, (s) => this.acceptCtl(s));
    const tty = await listen(ttyPath, (s) => this.acceptTty(s));
    closeServer(this.servers.ctl, this.servers.ctlPath);
    closeServer(this.servers.tty, this.servers.ttyPath);
    this.servers = { ctl, tty, ctlPath, ttyPath };
    return { ctlSocket: ctlPath, ttySocket: ttyPath };
  }

  settled(timeoutMs: number): Promise<void> {
    return firstOf(timeoutMs, (done) => (this.onSettled = done));
  }

  /** A newer driver connection replaces an older one, as with the guest itself. */
  private acceptCtl(client: Socket): void {
    if (this.closed || !this.ctl || this.ctl.destroyed) {
      client.destroy();
      return;
    }
    this.client?.destroy();
    this.client = client;
    client.on('error', () => {});
    client.on('close', () => {
      if (this.client === client) this.client = undefined;
    });
    const decoder = new CtlDecoder(BIG_FRAME);
    client.on('data', (chunk: Buffer) => {
      let frames: CtlFrame[];
      try {
        frames = decoder.push(chunk);
      } catch {
        client.destroy();
        return;
      }
      for (const f of frames) {
        this.owners.push(client);
        this.ctl?.write(encodeCtl(f.code, f.payload, BIG_FRAME));
      }
    });
    client.write(encodeCtl(Code.READY));
    for (const bytes of this.held.splice(0)) client.write(bytes);
  }

  private acceptTty(client: Socket): void {
    const tty = this.tty;
    if (this.closed || !tty || tty.destroyed) {
      client.destroy();
      return;
    }
    this.ttyClient?.destroy();
    this.ttyClient = client;
    client.on('error', () => {});
    client.on('drain', () => tty.resume());
    client.on('close', () => {
      if (this.ttyClient !== client) return;
      this.ttyClient = undefined;
      tty.pause();
    });
    client.on('data', (chunk: Buffer) => tty.write(chunk));
    tty.resume();
  }

  close(): void {
    this.closed = true;
    closeServer(this.servers.ctl, this.servers.ctlPath);
    closeServer(this.servers.tty, this.servers.ttyPath);
    this.servers = {};
    for (const s of [this.client, this.ttyClient, this.ctl, this.tty]) s?.destroy();
  }
}
