// The hyperstart-compatible guest agent:
//   main.js --ctl <socket> --tty <socket> [--cgroups auto|v1|v2|none] [--reaper auto|on|off] [--stock]
// It listens on both unix sockets and serves one host at a time until DESTROYPOD or
// SIGTERM, ending every process it started before it exits. --reaper auto runs container
// processes in a reaping pid namespace when the guest is PID 1. --stock (or its older
// name --upstream-only) behaves as a stock hyperstart was observed to (see server.ts and
// pod.ts), for testing hosts against it.
import { detectCgroups, guestLog, type CgroupChoice } from '../common/index.js';
import { GuestServer } from './server.js';

const log = guestLog('hyperstart');

function option(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? process.argv[i + 1] : fallback;
  if (!value) usage(`missing --${name}`);
  return value;
}

function usage(why: string): never {
  process.stderr.write(`usage: hyperstart --ctl <socket> --tty <socket> [--cgroups auto|v1|v2|none] [--reaper auto|on|off] [--stock] (${why})\n`);
  process.exit(2);
}

const cgroups = option('cgroups', 'auto') as CgroupChoice;
if (!['auto', 'v1', 'v2', 'none'].includes(cgroups)) usage(`--cgroups ${cgroups}`);
const reaper = option('reaper', 'auto');
if (!['auto', 'on', 'off'].includes(reaper)) usage(`--reaper ${reaper}`);

const server = new GuestServer({
  ctl: option('ctl'),
  tty: option('tty'),
  cgroups: detectCgroups(cgroups, log),
  reaper: reaper === 'on' || (reaper === 'auto' && process.pid === 1),
  log,
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

server.listen().catch((err: Error) => {
  log.error('cannot listen', { err });
  process.exit(1);
});
