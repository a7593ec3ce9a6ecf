// Inside a VM the host reaches the agent over one virtio-serial port, multiplexed with
// yamux as kata 1.x did: the host opens one yamux stream per gRPC connection, and each
// stream is handed to the agent's gRPC server as a connection of its own (no hop through
// a local socket: under TCG each one costs ms both ways). A host that goes away ends its
// session and every stream in it; the next host gets a new session.
import type { ConnectionInjector } from '@grpc/grpc-js';
import { SerialPort, type GuestLog } from '../common/index.js';
import { Session, type YamuxStream } from '../../protos/yamux/session.js';

export function serveSerial(device: string, agent: ConnectionInjector, log: GuestLog): SerialPort {
  return new SerialPort(device, (conn) => {
    const session = new Session(conn, {
      client: false,
      onStream: (stream: YamuxStream) => {
        stream.on('error', () => stream.destroy());
        agent.injectConnection(stream);
      },
    });
    session.onClose((err) => log.debug('host session ended', { err }));
  });
}
