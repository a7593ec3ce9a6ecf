// `-t` on `run` and `container exec` as `docker run -it` has it, with the CLI on a real
// pseudo-terminal (test/helpers/pty.ts) against a real runtime whose guests run the
// processes: the remote terminal starts at the local size and follows it on SIGWINCH;
// the local terminal is raw while the process runs (Ctrl-C typed here is the remote
// terminal's interrupt, and the CLI keeps going until the remote process ends) and is
// put back afterwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/nats.js';
import { connectClient, hostAuth, startTestHost, type TestHost } from '../helpers/runtime.js';
import { cliArgs, cliEnv, runCli } from '../helpers/cli.js';
import { onPty } from '../helpers/pty.js';
import { GUEST_AGENTS } from '../e2e/agents.js';
import type { VcClient } from '../../bus/client.js';

let server: TestServer;
let host: TestHost;
let client: VcClient;

beforeAll(async () => {
  server = await startTestServer();
  host = await startTestHost(server.url, { host: 'tty-host', ...hostAuth(server) });
  client = await connectClient(server.url, server.auth?.operator);
});

afterAll(async () => {
  await client?.close();
  await host?.stop();
  await server?.dispose();
});

const cli = (...args: string[]) => [process.execPath, ...cliArgs(server), ...args];
const SIZE = { rows: 31, cols: 97 };

for (const agent of GUEST_AGENTS) {
  describe(`-t on a pseudo-terminal, ${agent} agent`, { timeout: 120_000 }, () => {
    const target = ['--agent', agent, '--host', 'tty-host'];

    it('run -t: the remote terminal has the local size; the local mode is the same afterwards', async () => {
      const pty = onPty(cli('run', ...target, '--rm', '-t', '--', 'stty', 'size'), SIZE, cliEnv());
      const { status, before, after } = await pty.done;
      expect(pty.output()).toContain(`\r\n${SIZE.rows} ${SIZE.cols}\r\n`);
      expect(status).toBe(0);
      expect(after).toBe(before);
    });

    it('run -t: a change of the local size (SIGWINCH) reaches the remote terminal', async () => {
      const remote = "trap 'echo size=$(stty size)' WINCH; echo ready; while :; do sleep 1; done";
      const pty = onPty(cli('run', ...target, '--rm', '-t', '--', 'sh', '-c', remote), SIZE, cliEnv());
      await expect.poll(() => pty.output(), { timeout: 60_000 }).toContain('ready');
      await pty.resize(42, 123);
      await expect.poll(() => pty.output(), { timeout: 60_000 }).toContain('size=42 123');
      // Ctrl-C ends it: the shell dies of its terminal's SIGINT, and run exits 130.
      pty.type(Buffer.from([0x03]));
      expect((await pty.done).status).toBe(130);
    });

    it('exec -t: Ctrl-C typed locally is the remote terminal interrupt; the local mode is raw meanwhile and restored after', async () => {
      const sid = `tty-${agent}`;
      await client.call('SandboxCreate', {}, { sandbox: { id: sid, agent, containers: [{ id: 'c', args: ['sleep', '600'] }] }, start: true });
      try {
        const remote = "trap 'echo got-sigint; exit 7' INT; echo ready; while :; do sleep 1; done";
        const pty = onPty(cli('container', 'exec', '-t', sid, 'c', '--', 'sh', '-c', remote), SIZE, cliEnv());
        await expect.poll(() => pty.output(), { timeout: 60_000 }).toContain('ready');
        const during = await pty.modeNow();
        pty.type(Buffer.from([0x03]));
        const { status, before, after } = await pty.done;
        // Raw while it ran (no ISIG: our Ctrl-C did not stop the CLI, whose exit is the remote's).
        expect(during).not.toBe(before);
        expect(pty.output()).toContain('got-sigint');
        expect(status).toBe(7);
        expect(after).toBe(before);
      } finally {
        await client.call('SandboxDelete', { sid }, { force: true });
      }
    });

    it('container resize: the terminal of a detached container follows; one without a terminal is refused', async () => {
      const name = `tty-resize-${agent}`;
      const remote = "trap 'echo size=$(stty size)' WINCH; echo ready; while :; do sleep 1; done";
      expect(await runCli(server, 'run', ...target, '--name', name, '-d', '-t', '--', 'sh', '-c', remote)).toMatchObject({ code: 0 });
      try {
        const out = async () => (await client.call('ContainerLogs', { sid: name, cid: name })).stdout ?? '';
        await expect.poll(out, { timeout: 60_000 }).toContain('ready');
        expect(await runCli(server, 'container', 'resize', name, name, '44', '132')).toMatchObject({ code: 0, stdout: `terminal of ${name} resized to 44x132\n` });
        await expect.poll(out, { timeout: 60_000 }).toContain('size=44 132');
        await client.call('ContainerExec', { sid: name, cid: name }, { execId: 'plain', args: ['sleep', '600'] });
        const refused = await runCli(server, 'container', 'resize', name, name, '--exec-id', 'plain', '10', '10');
        expect(refused.code).toBe(1);
        expect(refused.stderr).toMatch(/FailedPrecondition.*exec plain was started without a terminal/);
      } finally {
        await client.call('SandboxDelete', { sid: name }, { force: true });
      }
    });

    it('run -t without a local terminal: the process still gets one, and --help says nothing is made raw then', async () => {
      const r = await runCli(server, 'run', ...target, '--rm', '-t', '--', 'sh', '-c', '[ -t 0 ] && [ -t 1 ] && echo on-a-terminal');
      expect(r).toMatchObject({ code: 0, stdout: 'on-a-terminal\r\n' });
      const help = await runCli(server, 'container', 'exec', '--help');
      expect(help.stdout.replace(/\s+/g, ' ')).toMatch(/when our stdin is a terminal, it goes raw .* otherwise nothing is made raw/);
    });

    it('exec -t: the local mode is put back when the command fails while the process runs', async () => {
      const sid = `tty-fail-${agent}`;
      await client.call('SandboxCreate', {}, { sandbox: { id: sid, agent, containers: [{ id: 'c', args: ['sleep', '600'] }] }, start: true });
      const pty = onPty(cli('container', 'exec', '-t', sid, 'c', '--', 'sh', '-c', 'echo ready; exec sleep 600'), SIZE, cliEnv());
      await expect.poll(() => pty.output(), { timeout: 60_000 }).toContain('ready');
      // The sandbox goes away under the CLI: following the exec fails.
      await client.call('SandboxDelete', { sid }, { force: true });
      const { status, before, after } = await pty.done;
      expect(status).not.toBe(0);
      expect(after).toBe(before);
    });
  });
}
