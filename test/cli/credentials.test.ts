// `npm start` with its private server: it creates its credentials on first start (0600
// files in 0700 directories, reused on the next start), never writes a secret to its
// output, refuses clients without them; the CLI finds them in the state directory,
// mints a viewer's, and a viewer's refusal reads "permission denied".
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../runtime/nats-server.js';
import { authFiles } from '../../bus/auth-files.js';
import { AUTHORITY_KEYS } from '../../bus/credentials.js';

const runFile = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'vc-start-'));
const auth = authFiles(join(dir, 'auth'));
let port: number;
let output = '';
let runtime: ChildProcess | undefined;

/** Starts dist/runtime/main.js (what `npm start` runs) and waits until it serves. */
async function start(): Promise<void> {
  const child = spawn(process.execPath, ['dist/runtime/main.js'], {
    env: { ...process.env, VC_STATE_DIR: dir, VC_NATS_PORT: String(port), VC_HOST: 'start-host', LOG_LEVEL: 'trace', NATS_URL: '', NATS_CREDS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  runtime = child;
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      output += d.toString();
      if (/serving on/.test(output.split('virtactors: host').at(-1) ?? '')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`runtime exited with ${code}:\n${output}`)));
  });
}

async function stop(): Promise<void> {
  const child = runtime;
  runtime = undefined;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function cli(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await runFile(process.execPath, ['dist/bin/virtactors.js', ...args], {
      env: { ...process.env, NATS_URL: '', NATS_CREDS: '', VC_STATE_DIR: dir, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  port = await freePort();
  await start();
}, 60_000);

afterAll(async () => {
  await stop();
  rmSync(dir, { recursive: true, force: true });
});

const mode = (path: string) => statSync(path).mode & 0o777;

// Several steps spawn CLI processes or restart the runtime: a wider hang guard than the default.
describe('npm start with its private server', { timeout: 90_000 }, () => {
  it('creates its credentials on first start, readable by their owner only', () => {
    expect(output).toMatch(/private nats-server at nats:\/\/127\.0\.0\.1:\d+ \(credentials required\)/);
    expect(mode(auth.dir)).toBe(0o700);
    expect(mode(join(auth.dir, 'creds'))).toBe(0o700);
    expect(mode(join(dir, 'nats'))).toBe(0o700);
    const files = [
      ...AUTHORITY_KEYS.flatMap((k) => [auth.seed(k), auth.jwt(k)]),
      auth.serverConfig, auth.creds('host'), auth.creds('operator'), join(dir, 'nats', 'nats-server.conf'),
    ];
    for (const f of files) expect([f, mode(f)]).toEqual([f, 0o600]);
    // Nothing else lies in the auth directory.
    expect(readdirSync(auth.dir).sort()).toEqual([...AUTHORITY_KEYS.flatMap((k) => [`${k}.jwt`, `${k}.nk`]), 'creds', 'nats-auth.conf'].sort());
  });

  it('serves the CLI, which finds the server and the operator credentials in the state directory', async () => {
    const created = await cli({}, '--json', 'sandbox', 'create', 'st1', '--start');
    expect(created.stderr).toBe('');
    expect(JSON.parse(created.stdout)).toMatchObject({ id: 'st1', state: 'running', host: 'start-host' });
  });

  it('refuses a client without credentials at connect', async () => {
    const url = readFileSync(join(dir, 'nats.url'), 'utf8').trim();
    const anon = await cli({ VC_STATE_DIR: join(dir, 'elsewhere') }, '--server', url, 'sandbox', 'list');
    expect(anon.code).toBe(1);
    expect(anon.stderr).toMatch(/cannot connect to .*Authorization Violation: the server requires credentials \(--creds FILE or NATS_CREDS\)/);
  });

  it('mints viewer credentials; the viewer reads, and is refused what changes state', async () => {
    const file = join(dir, 'bob.creds');
    const minted = await cli({}, 'creds', 'create', '--role', 'viewer', 'bob', '--out', file);
    expect(minted).toMatchObject({ code: 0, stdout: `viewer credentials for bob written to ${file} (mode 0600)\n` });
    expect(mode(file)).toBe(0o600);
    const again = await cli({}, 'creds', 'create', '--role', 'viewer', 'bob', '--out', file);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/exists; not overwriting it/);

    const status = await cli({ NATS_CREDS: file }, '--json', 'sandbox', 'status', 'st1');
    expect(JSON.parse(status.stdout)).toMatchObject({ id: 'st1', state: 'running' });
    const events = await cli({ NATS_CREDS: file }, 'events', '--sandbox', 'st1');
    expect(events.stdout).toMatch(/st1 #1 sandbox create -> ready/);

    const del = await cli({}, '--creds', file, 'sandbox', 'delete', 'st1', '--force');
    expect(del).toMatchObject({
      code: 1, stdout: '', stderr: 'virtactors: permission denied: role viewer may not sandbox delete st1 (publish vc.v1.sandbox.st1.delete)\n',
    });
    const mint = await cli({}, '--creds', file, 'creds', 'create', '--role', 'operator', 'eve', '--out', join(dir, 'eve.creds'));
    expect(mint.code).toBe(1);
    expect(mint.stderr).toBe('virtactors: permission denied: role viewer may not creds create (publish vc.v1.creds.create)\n');
  });

  it('keeps its credentials across a restart and never writes a secret to its output', async () => {
    const before = readFileSync(auth.creds('operator'), 'utf8');
    await stop();
    await start();
    expect(readFileSync(auth.creds('operator'), 'utf8')).toBe(before);
    const list = await cli({}, '--json', 'sandbox', 'list');
    expect(JSON.parse(list.stdout).map((s: { id: string }) => s.id)).toEqual(['st1']);
    await cli({}, 'sandbox', 'delete', 'st1', '--force');
    await stop();

    const seeds = [
      ...AUTHORITY_KEYS.map((k) => readFileSync(auth.seed(k), 'utf8').trim()),
      ...[auth.creds('host'), auth.creds('operator'), join(dir, 'bob.creds')].map((f) => /-----BEGIN USER NKEY SEED-----\s*(\S+)/.exec(readFileSync(f, 'utf8'))![1]!),
    ];
    expect(seeds).toHaveLength(AUTHORITY_KEYS.length + 3);
    // The host's own log lines were captured, the one about signing included.
    expect(output).toMatch(/"user":"bob","role":"viewer","msg":"credentials signed"/);
    for (const seed of seeds) expect(output.includes(seed)).toBe(false);
    expect(output).not.toMatch(/S[OAU][A-Z2-7]{56}/); // no nkey seed of any kind
  });
});
