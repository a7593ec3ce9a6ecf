// The external backend: the runtime starts no guest. It dials an agent endpoint that
// something else created, the way a runtime reaches an agent inside a VM another tool
// started: kata, a gRPC unix socket; hyperstart, its ctl and tty unix sockets. Such an
// endpoint must lie under a directory the host operator allows (VC_ATTACH_DIRS; none by
// default, so the backend is off until configured), once every symlink is resolved, and
// outside the runtime's own run directories (which it removes). The runtime never
// unlinks it. There is no process to watch: the monitor's agent check decides.
import { lstatSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import type { Logger } from 'pino';
import { failedPrecondition, invalidArgument, unavailable } from '../../bus/errors.js';
import type { GuestEndpoint } from '../agents/agent.js';
import type { Backend, BootRequest, GuestExit } from './backend.js';

export interface ExternalOptions {
  log: Logger;
  /** Directories endpoints may lie under; empty turns the backend off. */
  attachDirs: readonly string[];
}

/** `child` is `dir` or lies below it (both canonical). */
const within = (dir: string, child: string) => {
  const rel = relative(dir, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
};

/** A unix socket path of a gRPC address ("unix://<path>", "unix:<path>" or a bare path). */
function socketOfAddress(address: string): string {
  if (/^(tcp|vsock|dns|ipv4|ipv6):/.test(address)) throw invalidArgument(`external endpoint ${address}: only unix sockets can be attached`);
  return address.replace(/^unix:(\/\/)?/, '');
}

export class ExternalBackend implements Backend {
  readonly type = 'external' as const;
  readonly pid = undefined;
  /** The guest is not ours: nothing says how it maps its users. */
  readonly userNamespace = false;
  private readonly log: Logger;
  private readonly allowed: string[];
  /** The allowed directories as written and as resolved, for paths given either way. */
  private readonly allowedAsWritten: string[];

  constructor(options: ExternalOptions) {
    this.log = options.log;
    // Canonical once: a directory that does not exist allows nothing.
    this.allowed = options.attachDirs.flatMap((d) => {
      try {
        return [realpathSync(d)];
      } catch {
        this.log.warn({ dir: d }, 'VC_ATTACH_DIRS names a directory that does not exist: ignored');
        return [];
      }
    });
    this.allowedAsWritten = [...options.attachDirs.map((d) => resolve(d)), ...this.allowed];
  }

  /** Checks the endpoint the agent names and answers it with every path canonical. */
  async boot(request: BootRequest): Promise<GuestEndpoint> {
    if (this.allowed.length === 0) {
      throw failedPrecondition('the external backend is off on this host: its operator allows no directory for agent endpoints (VC_ATTACH_DIRS)');
    }
    // The endpoint is the spec's attach (never the agent configuration: that names sockets
    // inside the run directory only); the driver adopts the answer in startSandbox.
    const attach = request.sandbox.attach;
    const runRoot = dirname(request.runDir);
    const check = (path: string, what: string) => this.checkSocket(path, what, runRoot);
    if (attach?.grpcSocket) return { grpcAddress: `unix://${check(socketOfAddress(attach.grpcSocket), 'the kata agent socket (sandbox.attach.grpcSocket)')}` };
    if (attach?.ctlSocket && attach.ttySocket) {
      return { ctlSocket: check(attach.ctlSocket, 'the hyperstart ctl socket (sandbox.attach.ctlSocket)'), ttySocket: check(attach.ttySocket, 'the hyperstart tty socket (sandbox.attach.ttySocket)') };
    }
    throw invalidArgument(`the ${request.sandbox.agent} agent names no endpoint to attach to (sandbox.attach)`);
  }

  private checkSocket(path: string, what: string, runRoot: string): string {
    if (!isAbsolute(path)) throw invalidArgument(`${what} ${path}: an external endpoint must be an absolute path`);
    if (path.split('/').includes('..')) throw invalidArgument(`${what} ${path}: no ".." in an external endpoint`);
    const notAllowed = (real?: string) =>
      invalidArgument(`${what} ${path} is not under a directory this host allows for agent endpoints${real && real !== path ? ` (it resolves to ${real})` : ''}`);
    // As written, then with every symlink resolved (a link inside may point out).
    if (!this.allowedAsWritten.some((dir) => within(dir, path))) throw notAllowed();
    let real: string;
    try {
      real = realpathSync(path);
    } catch {
      throw unavailable(`${what} ${path} does not exist: nothing has created it yet`);
    }
    if (!this.allowed.some((dir) => within(dir, real))) throw notAllowed(real);
    let runReal = runRoot;
    try {
      runReal = realpathSync(runRoot);
    } catch {
      // no run directory yet: nothing of it to overlap
    }
    if (within(runReal, real)) throw invalidArgument(`${what} ${path} lies in the runtime's own run directories, which it removes`);
    if (!lstatSync(real).isSocket()) throw invalidArgument(`${what} ${path} is not a unix socket`);
    return real;
  }

  /** The endpoint outlives any runtime: the agent check tells whether it still answers. */
  async adopt(): Promise<boolean> {
    return true;
  }

  /** Nothing to stop and nothing to remove: the endpoint belongs to whoever made it. */
  async shutdown(): Promise<void> {}

  /** No process of ours to watch. */
  onExit(_listener: (exit: GuestExit) => void): void {}
}

