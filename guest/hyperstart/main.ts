// The hyperstart-compatible guest agent:
//   main.js --ctl <socket> --tty <socket> [--cgroups auto|v1|v2|none] [--reaper auto|on|off] [--upstream-only]
//           [--oci auto|crun|runc|none] [--state-parent <dir>]
// It listens on both unix sockets and serves one host at a time until DESTROYPOD or
// SIGTERM, ending every process it started before it exits. --reaper auto runs container
// processes in a reaping pid namespace when the guest is PID 1. Containers run through the
// OCI runtime (--oci, default $VIRTACTORS_OCI_RUNTIME or auto: crun; runc is refused for now), from
// bundles in a state directory made inside --state-parent and removed at exit.
import { join } from 'node:path';
import { detectCgroups, detectOciRuntime, guestLog, guestStateDir, OCI_RUNTIME_ENV, type CgroupChoice, type OciChoice } from '../common/index.js';
import { GuestServer } from './server.js';

const log = guestLog('hyperstart');

function option(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? process.argv[i + 1] : fallback;
  if (!value) usage(`missing --${name}`);
  return value;
}

function usage(why: string): never {
  process.stderr.write(`usage: hyperstart --ctl <socket> --tty <socket> [--cgroups auto|v1|v2|none] [--reaper auto|on|off] (${why})\n`);
  process.exit(2);
}

const cgroups = option('cgroups', 'auto') as CgroupChoice;
if (!['auto', 'v1', 'v2', 'none'].includes(cgroups)) usage(`--cgroups ${cgroups}`);
const reaper = option('reaper', 'auto');
if (!['auto', 'on', 'off'].includes(reaper)) usage(`--reaper ${reaper}`);

const ociChoice = option('oci', process.env[OCI_RUNTIME_ENV] || 'auto') as OciChoice;
if (!['auto', 'crun', 'runc', 'none'].includes(ociChoice)) usage(`--oci ${ociChoice}`);
const stateParent = process.argv.includes('--state-parent') ? option('state-parent') : undefined;
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
  ctl: option('ctl'),
  tty: option('tty'),
  cgroups: detectCgroups(cgroups, log),
  reaper: reaper === 'on' || (reaper === 'auto' && process.pid === 1),
  log,
  // Refuse the virtactors extension codes, as a stock hyperstart does (for tests of the fallbacks).
  upstreamOnly: process.argv.includes('--upstream-only'),
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

server.listen().catch((err: Error) => {
  log.error('cannot listen', { err });
  process.exit(1);
});
