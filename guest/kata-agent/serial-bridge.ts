// Inside a VM the host reaches the agent over one virtio-serial port, multiplexed with
// yamux as kata 1.x did: the host opens one yamux stream per gRPC connection, and each
// stream is joined here to a connection to the agent's own local socket. A host that goes
// away ends its session and every stream in it; the next host gets a new session.
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { SerialPort, type GuestLog } from '../common/index.js';
import { Session, type YamuxStream } from '../../protos/yamux/session.js';

/** Joins two duplexes; when either ends or fails, both go. */
function join(a: Duplex, b: Duplex): void {
  a.pipe(b);
  b.pipe(a);
  const done = () => {
    a.destroy();
    b.destroy();
  };
  for (const s of [a, b]) {
    s.on('error', done);
    s.on('close', done);
  }
}

export function serveSerial(device: string, agentSocket: string, log: GuestLog): SerialPort {
  return new SerialPort(device, (conn) => {
    const session = new Session(conn, {
      client: false,
      onStream: (stream: YamuxStream) => join(stream, connect(agentSocket)),
    });
    session.onClose((err) => log.debug('host session ended', { err }));
  });
}
