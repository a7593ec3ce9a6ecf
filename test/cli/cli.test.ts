// The CLI binary drives the same lifecycle as the bus tests, against a real server.
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import { hostAuth, startTestHost, type TestHost } from '../helpers/runtime.js';

const run = promisify(execFile);
let server: TestServer;
let host: TestHost;
let inspecting: TestHost;

beforeAll(async () => {
  server = await startTestServer();
  host = await startTestHost(server.url, { host: 'cli-host', ...hostAuth(server) });
  inspecting = await startTestHost(server.url, { host: 'cli-inspect', inspect: true, ...hostAuth(server) });
});

afterAll(async () => {
  await inspecting?.stop();
  await host?.stop();
  await server?.dispose();
});

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['dist/bin/virtactors.js', '--server', server.url, '--creds', server.auth!.operator, ...args], {
      env: { ...process.env, NATS_URL: '', NATS_CREDS: '' },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const json = async (...args: string[]) => {
  const r = await cli('--json', ...args);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
};

// Each step spawns a CLI process (~0.3 s of Node start alone); on a busy 2-core machine
// the twenty of the lifecycle outgrow the default hang guard.
describe('virtactors CLI', { timeout: 90_000 }, () => {
  it('drives a sandbox with two containers through its lifecycle', async () => {
    expect(await json('sandbox', 'create', 'cli1', '--host', 'cli-host', '--agent', 'noop', '--annotation', 'team=a')).toMatchObject({
      id: 'cli1', state: 'ready', host: 'cli-host', annotations: { team: 'a' },
    });
    expect(await json('container', 'create', 'cli1', 'web', '--env', 'A=1', '--', 'sleep', '30')).toMatchObject({
      id: 'web', state: 'ready', spec: { args: ['sleep', '30'], env: ['A=1'] },
    });
    expect(await json('container', 'create', 'cli1', 'db', '--', 'sleep', '30')).toMatchObject({ id: 'db' });
    const started = await json('sandbox', 'start', 'cli1');
    expect(started.state).toBe('running');
    expect(started.containers.map((c: { state: string }) => c.state)).toEqual(['running', 'running']);

    const table = await cli('sandbox', 'status', 'cli1');
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+STATE\s+AGENT/m);
    expect(table.stdout).toMatch(/^cli1\s+running\s+noop\s+none\s+cli-host\s+2/m);
    expect(table.stdout).toMatch(/^web\s+running/m);

    expect(await json('container', 'kill', 'cli1', 'web', 'SIGUSR1', '--all')).toEqual({ signal: 10 });
    expect(await json('container', 'exec', '-d', 'cli1', 'web', '--exec-id', 'x1', '--', 'ls')).toEqual({ execId: 'x1', pid: 0 });
    const ps = await cli('container', 'ps', 'cli1', 'web', '--format', 'json');
    expect(JSON.parse(ps.stdout)).toEqual([]);
    expect((await json('container', 'stop', 'cli1', 'db')).state).toBe('stopped');
    expect(await json('container', 'wait', 'cli1', 'db')).toMatchObject({ exitStatus: 0 });
    expect((await json('sandbox', 'stop', 'cli1')).state).toBe('stopped');

    const list = await cli('sandbox', 'list');
    expect(list.stdout).toMatch(/^cli1\s+stopped/m);
    expect(await json('sandbox', 'delete', 'cli1')).toEqual({ id: 'cli1', deleted: true });
    expect(await json('sandbox', 'list')).toEqual([]);

    const events = await cli('events', '--sandbox', 'cli1');
    const lines = events.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/cli1 #1 sandbox create -> ready/);
    expect(lines.at(-1)).toMatch(/sandbox delete -> deleted/);
    expect(lines.some((l) => /container db exit -> stopped, status 0/.test(l))).toBe(true);
    const since = await json('events', '--sandbox', 'cli1', '--since', String(lines.length));
    expect(since).toMatchObject({ seq: lines.length, type: 'delete' });
  });

  it('prints the error code and message and exits non-zero for bad requests', async () => {
    const missing = await cli('sandbox', 'status', 'nosuch');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('virtactors: NotFound: sandbox nosuch does not exist\n');
    const bad = await cli('sandbox', 'create', 'bad', '--agent', 'kata', '--backend', 'none');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/InvalidArgument: the kata agent needs a guest: use backend "namespace", "process", "vm" or "external"/);
    // A value the CLI knows to be wrong is refused before anything is sent (exit 2).
    const kvm = await cli('sandbox', 'create', 'bad', '--agent', 'kvm');
    expect(kvm.code).toBe(2);
    expect(kvm.stderr).toMatch(/option '--agent <type>' argument 'kvm' is invalid. Allowed choices are noop, hyperstart, kata./);
    const usage = await cli('sandbox', 'frob');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/unknown command 'frob'/);
  });

  it('lists runtime hosts through service discovery, saying which publish inspection', async () => {
    const hosts = await json('hosts');
    expect(hosts).toHaveLength(2);
    const byHost = (h: string) => hosts.find((x: { metadata: { host: string } }) => x.metadata.host === h);
    expect(byHost('cli-host')).toMatchObject({ type: 'io.nats.micro.v1.info_response', name: 'virtactors', metadata: { inspect: 'false' } });
    expect(byHost('cli-inspect')).toMatchObject({ metadata: { inspect: 'true' } });
    const text = await cli('hosts');
    expect(text.stdout).toMatch(/^cli-host\s+\S+\s+\d+\s+no\s+-\s+\S+$/m);
    expect(text.stdout).toMatch(/^cli-inspect\s+\S+\s+\d+\s+yes\s+-\s+\S+$/m);
  });

  it('inspect says at once that a sandbox does not exist', async () => {
    const r = await cli('inspect', 'nosuch');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/NotFound: sandbox nosuch does not exist/);
  });

  it('inspect says at once that the host does not publish inspection', async () => {
    await json('sandbox', 'create', 'quiet', '--host', 'cli-host');
    const r = await cli('inspect', 'quiet');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/FailedPrecondition: host cli-host does not publish inspection: start it with VC_INSPECT=1/);
    await json('sandbox', 'delete', 'quiet');
  });

  it('inspect follows the actors of a sandbox on a host that publishes them, with their paths', async () => {
    await json('sandbox', 'create', 'watched', '--host', 'cli-inspect');
    const child = spawn(process.execPath, ['dist/bin/virtactors.js', '--server', server.url, '--creds', server.auth!.operator, '--json', 'inspect', 'watched'], {
      env: { ...process.env, NATS_URL: '', NATS_CREDS: '' },
    });
    let stderr = '';
    const lines: Array<{ path: string; actorId: string; state: string }> = [];
    let buffered = '';
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
        lines.push(JSON.parse(buffered.slice(0, i)));
        buffered = buffered.slice(i + 1);
      }
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          if (stderr.includes('following the actors of sandbox watched on host cli-inspect')) resolve();
        });
        child.once('exit', () => reject(new Error(`inspect exited: ${stderr}`)));
      });
      await json('sandbox', 'start', 'watched');
      await json('container', 'create', 'watched', 'c1', '--', 'sleep', '5');
      await expect.poll(() => lines.map((l) => `${l.path} ${l.state}`)).toEqual(
        expect.arrayContaining(['watched "running"', 'watched/c1 "ready"', 'watched/op.monitor {"watching":"waiting"}']),
      );
    } finally {
      child.kill('SIGINT');
      await once(child, 'exit');
    }
    await json('sandbox', 'delete', 'watched', '--force');
  });

  it('ui serves the live page on loopback until interrupted', async () => {
    const child = spawn(process.execPath, ['dist/bin/virtactors.js', '--server', server.url, '--creds', server.auth!.viewer, 'ui', '--port', '0'], {
      env: { ...process.env, NATS_URL: '', NATS_CREDS: '' },
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /virtactors ui: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.once('exit', (code) => reject(new Error(`ui exited with ${code}: ${out}`)));
      });
      const page = await fetch(url);
      expect(page.status).toBe(200);
      expect(await page.text()).toMatch(/<script src="\/app\.js">/);
      expect((await fetch(`${url}app.js`)).status).toBe(200);
      expect((await fetch(`${url}elk-worker.js`)).status).toBe(200);
    } finally {
      child.kill('SIGINT');
    }
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
  });

  it('ui refuses a bad port', async () => {
    const r = await cli('ui', '--port', 'x');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/option '--port <n>' argument 'x' is invalid. takes a port number/);
  });
});
