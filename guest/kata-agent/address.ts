// Listen addresses: unix://<path>, a bare path, or tcp://127.0.0.1:<port> (tests).
import { resolve } from 'node:path';

export interface ListenAddress {
  /** The target grpc-js binds to. */
  target: string;
  /** The socket file to remove at exit, for unix addresses. */
  socketPath?: string;
}

export function parseListen(address: string): ListenAddress {
  if (address.startsWith('tcp://')) {
    const hostPort = address.slice('tcp://'.length);
    if (!/^[^/]+:\d+$/.test(hostPort)) throw new Error(`bad tcp address ${address}: expected tcp://<host>:<port>`);
    return { target: hostPort };
  }
  const path = address.startsWith('unix://') ? address.slice('unix://'.length) : address.startsWith('unix:') ? address.slice('unix:'.length) : address;
  if (!path) throw new Error(`bad listen address ${JSON.stringify(address)}`);
  const abs = resolve(path);
  return { target: `unix://${abs}`, socketPath: abs };
}
