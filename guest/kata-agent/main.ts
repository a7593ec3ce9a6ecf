// The kata-compatible guest agent: serves grpc.AgentService and grpc.Health on one
// socket and runs the sandbox's processes.
//
//   node dist/guest/kata-agent/main.js --listen unix:///run/sandbox/kata.sock
//     [--cgroups auto|v1|v2|none] [--reaper auto|on|off] [--stock] [--oci auto|crun|runc|none]
//     [--state-parent <dir>]
//   node dist/guest/kata-agent/main.js --serial [agent.channel.0] ...      (inside a VM)
//
// With --serial the agent serves each yamux stream of the virtio-serial port as a
// connection of its own, and still listens on a local socket (/run/kata-agent.sock unless
// --listen says otherwise).
// Containers run through the OCI runtime (--oci, default $VIRTACTORS_OCI_RUNTIME or auto:
// crun; runc when chosen), from bundles in a state directory the agent makes inside
// --state-parent (default the system's temporary directory) and removes when it stops.
// --reaper auto runs processes in a reaping pid namespace when the agent is PID 1.
// --stock behaves as the stock kata agent 1.x was observed to (see service.ts), for
// testing hosts against it; a spec it would dereference nil in makes it die (exit 2).
// SIGTERM (or SIGINT) kills every container process, removes the socket and exits 0.
import { setFlagsFromString } from 'node:v8';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { join } from 'node:path';
import {
  claimSocketPath,
  detectOciRuntime,
  guestLog,
  guestStateDir,
  OCI_RUNTIME_ENV,
  ownSocket,
  procIsOurs,
  tuneForAccelerator,
  waitForPort,
  type CgroupChoice,
  type OciChoice,
  type OwnSocket,
} from '../common/index.js';
import { agentService, healthService } from '../../protos/kata/index.js';
import { parseListen } from './address.js';
import { implementation, KataAgent } from './service.js';
import { serveSerial } from './serial-bridge.js';

const log = guestLog('kata-agent');
/** The port name kata 1.x gives the agent's channel. */
const SERIAL_PORT = 'agent.channel.0';
const PORT_WAIT_MS = 30_000;

function option(name: string, fallback?: string): string | undefined {
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === `--${name}`) return args[i + 1];
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3);
  }
  return fallback;
}

function fail(message: string): never {
  log.error(message);
  process.exit(2);
}

async function main(): Promise<void> {
  const serialAt = process.argv.indexOf('--serial');
  const serial = serialAt < 0 ? undefined : process.argv[serialAt + 1]?.startsWith('--') || !process.argv[serialAt + 1] ? SERIAL_PORT : process.argv[serialAt + 1]!;
  const listen = option('listen') ?? (serial ? 'unix:///run/kata-agent.sock' : fail('missing --listen unix://<path> | <path> | tcp://127.0.0.1:<port>'));
  const cgroups = (option('cgroups', 'auto') ?? 'auto') as CgroupChoice;
  if (!['auto', 'v1', 'v2', 'none'].includes(cgroups)) fail(`--cgroups ${cgroups}: use auto, v1, v2 or none`);
  const reaperOpt = option('reaper', 'auto');
  if (!['auto', 'on', 'off'].includes(reaperOpt!)) fail(`--reaper ${reaperOpt}: use auto, on or off`);
  const reaper = reaperOpt === 'on' || (reaperOpt === 'auto' && process.pid === 1);
  if (!procIsOurs()) log.warn('/proc belongs to another pid namespace: process lists and pids will be wrong');

  let address;
  try {
    address = parseListen(listen);
  } catch (err) {
    fail((err as Error).message);
  }
  if (serial && !address.socketPath) fail('--serial joins the port to a unix socket: --listen must name one');
  const ociChoice = (option('oci', process.env[OCI_RUNTIME_ENV] || 'auto') ?? 'auto') as OciChoice;
  if (!['auto', 'crun', 'runc', 'none'].includes(ociChoice)) fail(`--oci ${ociChoice}: use auto, crun, runc or none`);
  let state;
  let oci;
  try {
    state = guestStateDir(option('state-parent'));
    oci = detectOciRuntime({ choice: ociChoice, stateRoot: join(state.path, 'runtime'), log });
  } catch (err) {
    state?.remove();
    fail((err as Error).message);
  }
  const stateDir = state;
  process.on('exit', () => stateDir.remove());
  const stock = process.argv.includes('--stock');
  let agent: KataAgent;
  // The stock agent's nil dereference: a Go panic, exit status 2, nothing cleaned up
  // but the processes we started (a test host must not inherit them).
  const die = async (message: string): Promise<never> => {
    process.stderr.write(`${message}\n`);
    await Promise.race([agent.shutdown().catch(() => {}), new Promise((r) => setTimeout(r, 2_000))]);
    process.exit(2);
  };
  agent = new KataAgent({ log, cgroups, reaper, stock, die, setHostname: !!serial, primeCreate: !!serial, stateDir: stateDir.path, ...(oci ? { oci } : {}) });
  const server = new Server();
  server.addService(agentService, implementation(agent.agent, log));
  server.addService(healthService, implementation(agent.health, log));
  // Free, or a dead socket of an earlier guest; anything else at the path stays and we stop.
  if (address.socketPath) await claimSocketPath(address.socketPath).catch((err: Error) => fail(`cannot listen on ${listen}: ${err.message}`));

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address.target, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  ).catch((err: Error) => fail(`cannot listen on ${listen}: ${err.message}`));
  const socket: OwnSocket | undefined = address.socketPath ? ownSocket(address.socketPath) : undefined;
  if (serial) serveSerial(await waitForPort(serial, PORT_WAIT_MS).catch((err: Error) => fail(err.message)), server.createConnectionInjector(ServerCredentials.createInsecure()), log);
  agent.prepare();
  log.info('listening', { address: listen, ...(address.socketPath ? {} : { port }), ...(serial ? { serial } : {}), pid1: process.pid === 1, reaper, stock, oci: oci?.name ?? 'none' });
  // The guest's work is light: without the optimising compiler its memory stays flat after
  // activity. Set only now: a V8 flag given at start-up would cost Node its code cache.
  setFlagsFromString('--no-opt');
  tuneForAccelerator();

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    await agent.shutdown().catch((err: Error) => log.error('shutdown failed', { err }));
    server.forceShutdown();
    socket?.remove();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { err: err as Error }));
}

void main();
