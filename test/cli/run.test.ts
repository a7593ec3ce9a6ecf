// `virtactors run` and `container exec` as docker users expect them, against a real
// runtime whose kata guest runs the processes: output streamed, exit status passed on,
// -d and --rm, per-command help, --version, -q, and messages that say what is wrong.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import { connectClient, hostAuth, startTestHost, type TestHost } from '../helpers/runtime.js';
import { cliArgs, cliEnv, runCli } from '../helpers/cli.js';
import type { VcClient } from '../../bus/client.js';

let server: TestServer;
let host: TestHost;
let other: TestHost;
let client: VcClient;

beforeAll(async () => {
  server = await startTestServer();
  host = await startTestHost(server.url, { host: 'run-host', ...hostAuth(server) });
  other = await startTestHost(server.url, { host: 'run-other', ...hostAuth(server) });
  client = await connectClient(server.url, server.auth?.operator);
});

afterAll(async () => {
  await client?.close();
  await other?.stop();
  await host?.stop();
  await server?.dispose();
});

const args = () => cliArgs(server);
const env = cliEnv;
const cli = (...rest: string[]) => runCli(server, ...rest);

const KATA = ['--agent', 'kata', '--host', 'run-host'];

describe('virtactors run and exec', { timeout: 120_000 }, () => {
  it('run creates a sandbox, streams stdout and stderr apart, and exits with the status', async () => {
    const r = await cli('run', ...KATA, '--name', 'r1', '--', 'sh', '-c', 'echo hello; echo oops >&2; exit 3');
    expect(r).toEqual({ code: 3, stdout: 'hello\n', stderr: 'oops\n' });
    // Without --rm the sandbox and its stopped container stay, as docker keeps a stopped container.
    const status = await client.call('ContainerStatus', { sid: 'r1', cid: 'r1' });
    expect(status.container).toMatchObject({ state: 'stopped', exitStatus: 3 });
    await client.call('SandboxDelete', { sid: 'r1' }, { force: true });
  });

  it('run streams output while the process still runs', async () => {
    const child = spawn(process.execPath, [...args(), 'run', ...KATA, '--name', 'r2', '--rm', '--', 'sh', '-c', 'echo first; sleep 300; echo never'], { env: env() });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // The first line arrives while the process still sleeps.
    await expect.poll(() => out, { timeout: 60_000 }).toBe('first\n');
    const exit = once(child, 'exit');
    await client.call('ContainerKill', { sid: 'r2', cid: 'r2' }, { signal: 9 });
    const [code] = await exit;
    expect(code).toBe(137);
    // --rm deleted the sandbox run made.
    await expect(client.call('SandboxStatus', { sid: 'r2' })).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('run --rm deletes the container and the sandbox; -d detaches printing the id', async () => {
    const rm = await cli('run', ...KATA, '--name', 'r3', '--rm', '--', 'echo', 'gone');
    expect(rm).toEqual({ code: 0, stdout: 'gone\n', stderr: '' });
    await expect(client.call('SandboxStatus', { sid: 'r3' })).rejects.toMatchObject({ code: 'NotFound' });

    const d = await cli('run', ...KATA, '--name', 'r4', '-d', '--', 'sleep', '300');
    expect(d).toEqual({ code: 0, stdout: 'r4\n', stderr: '' });
    expect((await client.call('ContainerStatus', { sid: 'r4', cid: 'r4' })).container?.state).toBe('running');

    // run --sandbox uses an existing one and --rm deletes only the container.
    const inside = await cli('run', '--sandbox', 'r4', '--name', 'c2', '--rm', '--', 'sh', '-c', 'exit 7');
    expect(inside.code).toBe(7);
    const after = await client.call('SandboxStatus', { sid: 'r4' });
    expect(after.sandbox?.containers?.map((c) => c.id)).toEqual(['r4']);
  });

  it('container exec waits, streams and exits with the status; -d keeps the old behaviour', async () => {
    const r = await cli('container', 'exec', 'r4', 'r4', '--', 'sh', '-c', 'echo out; echo err >&2; exit 5');
    expect(r).toEqual({ code: 5, stdout: 'out\n', stderr: 'err\n' });
    const ok = await cli('container', 'exec', 'r4', 'r4', '--', 'cat', '/marker-not-here');
    expect(ok.code).toBe(1);
    expect(ok.stderr).toMatch(/marker-not-here/);

    const d = await cli('container', 'exec', '-d', '--exec-id', 'bg1', 'r4', 'r4', '--', 'sleep', '1');
    expect(d.code).toBe(0);
    expect(d.stdout).toMatch(/^exec bg1 started, pid (\d+|unknown)\n$/);
    const q = await cli('-q', 'container', 'exec', '-d', 'r4', 'r4', '--', 'true');
    expect(q.stdout).toMatch(/^[\w-]+\n$/);
    const waited = await cli('container', 'wait', 'r4', 'r4', '--exec-id', 'bg1');
    expect(waited.code).toBe(0);
    expect(waited.stdout).toMatch(/^exit status 0 at /);
  });

  it('-i forwards stdin to an exec and to run, and closes it at the end of input', async () => {
    const piped = async (input: string, ...rest: string[]) => {
      const child = spawn(process.execPath, [...args(), ...rest], { env: env() });
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stdin.end(input);
      const [code] = await once(child, 'exit');
      return { code, stdout };
    };
    expect(await piped('one\ntwo\n', 'container', 'exec', '-i', 'r4', 'r4', '--', 'cat')).toEqual({ code: 0, stdout: 'one\ntwo\n' });
    expect(await piped('answer\n', 'run', ...KATA, '--name', 'r6', '--rm', '-i', '--', 'sh', '-c', 'read x; echo got $x; exit 4')).toEqual({ code: 4, stdout: 'got answer\n' });
  });

  it('container logs -f follows a detached container to its exit', async () => {
    expect((await cli('run', ...KATA, '--name', 'r5', '-d', '--', 'sh', '-c', 'echo a; sleep 1; echo b >&2; echo c')).code).toBe(0);
    expect(await cli('container', 'logs', '-f', 'r5', 'r5')).toEqual({ code: 0, stdout: 'a\nc\n', stderr: 'b\n' });
    await client.call('SandboxDelete', { sid: 'r5' }, { force: true });
  });

  it('-q prints ids only; stats speaks human units and says unlimited', async () => {
    const list = await cli('-q', 'sandbox', 'list', '--host', 'run-host');
    expect(list.stdout).toBe('r4\n');
    const stats = await cli('container', 'stats', 'r4', 'r4');
    expect(stats.code).toBe(0);
    expect(stats.stdout).toMatch(/^CPU\s+MEMORY\s+MEMORY LIMIT\s+PIDS\s+PIDS LIMIT$/m);
    // No limit was set on this sandbox: said so, not 0.
    expect(stats.stdout).toMatch(/^\S+ s\s+\d+(\.\d)? (B|KiB|MiB|GiB)\s+unlimited\s+\d+\s+unlimited$/m);
    await client.call('SandboxDelete', { sid: 'r4' }, { force: true });
  });

  it('events --follow ends at Ctrl-C while no event comes, and shows the latest incarnation only', async () => {
    for (let i = 0; i < 2; i++) {
      await client.call('SandboxCreate', {}, { sandbox: { id: 'inc' } });
      await client.call('SandboxDelete', { sid: 'inc' });
    }
    const replay = await cli('events', '--sandbox', 'inc');
    expect(replay.stdout.trim().split('\n').map((l) => l.replace(/^\S+ /, ''))).toEqual(['inc #1 sandbox create -> ready', 'inc #2 sandbox delete -> deleted']);
    const since = await cli('events', '--sandbox', 'inc', '--since', '2');
    expect(since.stdout.trim().split('\n')).toHaveLength(1);

    const child = spawn(process.execPath, [...args(), 'events', '--sandbox', 'inc', '--follow'], { env: env() });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await expect.poll(() => out.split('\n').length, { timeout: 30_000 }).toBe(3);
    const exit = once(child, 'exit');
    child.kill('SIGINT');
    expect((await exit)[0]).toBe(0);
  });
});

describe('virtactors usage and messages', { timeout: 60_000 }, () => {
  it('--version prints the package version; every command has its own --help', async () => {
    const version = JSON.parse(readFileSync('package.json', 'utf8')).version;
    expect(await cli('--version')).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
    const help = await cli('container', 'exec', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: virtactors container exec \[options\] <sid> <cid> <command\.\.\.>/);
    expect(help.stdout).toMatch(/-d, --detach/);
    expect(help.stdout).not.toMatch(/sandbox create/);
    const run = await cli('run', '--help');
    expect(run.stdout).toMatch(/--rm/);
  });

  it('refuses bad flags with a message naming the flag and a pointer to the command help', async () => {
    const interval = await cli('sandbox', 'create', 'x1', '--monitor-interval', 'abc');
    expect(interval.code).toBe(2);
    expect(interval.stderr).toBe(
      "virtactors: option '--monitor-interval <ms>' argument 'abc' is invalid. takes a whole number of milliseconds, not \"abc\"\n(virtactors sandbox create --help shows the usage)\n",
    );
    const typo = await cli('sandbox', 'delete', 'x1', '--frce');
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/^virtactors: unknown option '--frce'\n\(Did you mean --force\?\)\n/);
    const tail = await cli('container', 'logs', 's', 'c', '--tail', '-3');
    expect(tail.code).toBe(2);
    expect(tail.stderr).toMatch(/--tail <bytes>' argument '-3' is invalid/);
    const verb = await cli('sandbox', 'frob');
    expect(verb.code).toBe(2);
    expect(verb.stderr).toMatch(/^virtactors: unknown command 'frob'\n\(virtactors sandbox --help shows the usage\)\n$/);
  });

  it('a container needs a command; ids are checked before they reach the bus', async () => {
    const none = await cli('container', 'create', 'x1', 'c1');
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/a container needs a command/);
    const bad = await cli('events', '--sandbox', 'bad id');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/sandbox id "bad id" is invalid: use 1 to 63 characters/);
    expect(bad.stderr).not.toMatch(/illegal subject|\$JS/);
  });

  it('--host names the hosts there are when the one asked for is not', async () => {
    const r = await cli('sandbox', 'create', 'x2', '--host', 'nohost');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('virtactors: NotFound: no runtime host named nohost: the hosts on this bus are run-host, run-other\n');
  });

  it('--rootfs that does not exist is named as such', async () => {
    await client.call('SandboxCreate', {}, { sandbox: { id: 'x3' } });
    const r = await cli('container', 'create', 'x3', 'c1', '--rootfs', '/nonexistent', '--', 'true');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/rootfs "\/nonexistent" is not an existing directory/);
    await client.call('SandboxDelete', { sid: 'x3' }, { force: true });
  });

  it('a refused container command says whether the sandbox or the container refused it', async () => {
    await client.call('SandboxCreate', {}, { sandbox: { id: 'x4' } });
    await client.call('ContainerCreate', { sid: 'x4' }, { container: { id: 'c1', args: ['true'] } });
    const bySandbox = await client.request('ContainerStart', { sid: 'x4', cid: 'c1' });
    expect(bySandbox.error).toMatchObject({ code: 'FailedPrecondition', state: 'ready', refusedBy: 'sandbox' });
    await client.call('SandboxStart', { sid: 'x4' });
    const byContainer = await client.request('ContainerResume', { sid: 'x4', cid: 'c1' });
    expect(byContainer.error).toMatchObject({ code: 'FailedPrecondition', state: 'running', refusedBy: 'container' });
    // The noop agent runs no process: writing to one is refused, not dropped.
    const stdin = await client.request('ContainerStdin', { sid: 'x4', cid: 'c1' }, { data: Buffer.from('x').toString('base64') });
    expect(stdin.error).toMatchObject({ code: 'Unimplemented', message: 'the noop agent has no process stdin' });
    const r = await cli('container', 'resume', 'x4', 'c1');
    expect(r.stderr).toBe('virtactors: FailedPrecondition: cannot resume container c1 while it is running\n');
    await client.call('SandboxDelete', { sid: 'x4' }, { force: true });
  });
});
