// The CLI binary as a user runs it, against a test server: with the operator's
// credentials, nothing from the environment, asynchronously (a host may run in the
// test's own process and must keep answering).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { TestServer } from './nats.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** argv for `node dist/bin/virtactors.js` on this server, before the command's own. */
export const cliArgs = (server: TestServer): string[] => ['dist/bin/virtactors.js', '--server', server.url, ...(server.auth ? ['--creds', server.auth.operator] : [])];

export const cliEnv = (): NodeJS.ProcessEnv => ({ ...process.env, NATS_URL: '', NATS_CREDS: '' });

export async function runCli(server: TestServer, ...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...cliArgs(server), ...args], { env: cliEnv() });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as CliResult;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
