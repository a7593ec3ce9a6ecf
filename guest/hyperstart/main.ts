// The hyperstart-compatible guest agent: `main.js --ctl <socket> --tty <socket>`.
// It listens on both unix sockets and serves one host at a time until DESTROYPOD or
// SIGTERM, ending every process it started before it exits.
import { GuestServer } from './server.js';

function option(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? process.argv[i + 1] : undefined;
  if (!value) {
    process.stderr.write(`usage: hyperstart --ctl <socket path> --tty <socket path> (missing --${name})\n`);
    process.exit(2);
  }
  return value;
}

const server = new GuestServer({ ctl: option('ctl'), tty: option('tty') });
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
  process.stderr.write(`hyperstart guest cannot listen: ${err.message}\n`);
  process.exit(1);
});
