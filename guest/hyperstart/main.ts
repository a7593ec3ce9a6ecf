// The hyperstart-compatible guest agent:
//   main.js --ctl <socket> --tty <socket> [--shared-root <dir>] [--cgroups auto|v1|v2|none]
//           [--reaper auto|on|off] [--stock] [--oci auto|crun|runc|none] [--state-parent <dir>]
//   main.js --serial [--ctl <port name>] [--tty <port name>] ...     (inside a VM)
// It listens on both unix sockets, or with --serial uses the two virtio-serial ports
// (by default sh.hyper.channel.0 and .1, as upstream names them), and serves one host at
// a time until DESTROYPOD or SIGTERM, ending every process it started before it exits.
// Container rootfs are <shared root>/<image>/<rootfs>; STARTPOD's shareDir tag is
// mounted (9p) at the shared root. --reaper auto runs container processes in a reaping
// pid namespace when the guest is PID 1. Containers run through the OCI runtime (--oci,
// default $VIRTACTORS_OCI_RUNTIME or auto: crun; runc when chosen), from bundles
// in a state directory made inside --state-parent and removed at exit. --stock (or its
// older name --upstream-only) behaves as a stock hyperstart was observed to (see
// server.ts and pod.ts), for testing hosts against it.
import { join } from 'node:path';
import { detectCgroups, detectOciRuntime, guestLog, guestStateDir, OCI_RUNTIME_ENV, tuneForAccelerator, waitForPort, type CgroupChoice, type OciChoice } from '../common/index.js';
import { GuestServer } from './server.js';

const log = guestLog('hyperstart');
const PORT_WAIT_MS = 30_000;

function option(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? process.argv[i + 1] : fallback;
  if (!value) usage(`missing --${name}`);
  return value;
}

function usage(why: string): never {
  process.stderr.write(
    `usage: hyperstart (--ctl <socket> --tty <socket> | --serial [--ctl <port> --tty <port>]) [--shared-root <dir>] [--cgroups auto|v1|v2|none] [--reaper auto|on|off] [--stock] (${why})\n`,
  );
  process.exit(2);
}

const serial = process.argv.includes('--serial');
const cgroups = option('cgroups', 'auto') as CgroupChoice;
if (!['auto', 'v1', 'v2', 'none'].includes(cgroups)) usage(`--cgroups ${cgroups}`);
const reaper = option('reaper', 'auto');
if (!['auto', 'on', 'off'].includes(reaper)) usage(`--reaper ${reaper}`);
const ctl = option('ctl', serial ? 'sh.hyper.channel.0' : undefined);
const tty = option('tty', serial ? 'sh.hyper.channel.1' : undefined);

const ociChoice = option('oci', process.env[OCI_RUNTIME_ENV] || 'auto') as OciChoice;
if (!['auto', 'crun', 'runc', 'none'].includes(ociChoice)) usage(`--oci ${ociChoice}`);
const stateParent = process.argv.includes('--state-parent') ? option('state-parent') : undefined;

async function main(): Promise<void> {
  let state;
  let oci;
  try {
    state = guestStateDir(stateParent);
    oci = detectOciRuntime({ choice: ociChoice, stateRoot: join(state.path, 'runtime'), log });
  } catch (err) {
    state?.remove();
    log.error('cannot run containers', { err: err as Error });
    process.exit(2);
  }
  const stateDir = state;
  process.on('exit', () => stateDir.remove());

  const server = new GuestServer({
    stateDir: stateDir.path,
    ...(oci ? { oci } : {}),
    ctl: serial ? await waitForPort(ctl, PORT_WAIT_MS) : ctl,
    tty: serial ? await waitForPort(tty, PORT_WAIT_MS) : tty,
    serial,
    sharedRoot: option('shared-root', '/run/hyperstart/shared'),
    // Inside a VM the guest is the whole machine: the pod's hostname is the kernel's.
    setHostname: serial,
    cgroups: detectCgroups(cgroups, log, { forRunc: oci?.name === 'runc' }),
    reaper: reaper === 'on' || (reaper === 'auto' && process.pid === 1),
    log,
    // Behave as a stock hyperstart was observed to (for tests of hosts against it).
    stock: process.argv.includes('--stock') || process.argv.includes('--upstream-only'),
  });

  let exiting = false;
  const exit = (status: number) => {
    if (exiting) return;
    exiting = true;
    server.close().finally(() => process.exit(status));
  };
  server.onDestroyed = () => exit(0);
  process.on('SIGTERM', () => exit(0));
  process.on('SIGINT', () => exit(0));
  await server.listen();
  tuneForAccelerator();
  log.info('serving', { ctl, tty, serial });
}

main().catch((err: Error) => {
  log.error('cannot serve', { err });
  process.exit(1);
});
