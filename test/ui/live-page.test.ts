// The live page in headless Chromium against a real runtime (nats-server + a host that
// publishes inspection): the list shows a new sandbox and its state, the diagram shows
// the current state of every actor as it moves and a container once it exists, and a
// guest killed for real turns the sandbox failed with its reason. The last test takes a
// screenshot; with VC_UPDATE_DOCS=1 it replaces docs/ui-failed-sandbox.png (the README's),
// otherwise it goes to a temporary file, so a test run leaves the checkout as it was.
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { startUiServer, type UiServer } from '../../ui/server.js';
import { connectClient, useRuntime } from '../helpers/runtime.js';
import type { VcClient } from '../../bus/client.js';
import { launchBrowser, type Browser } from '../helpers/browser.js';

const rt = useRuntime({ host: 'ui-host', inspect: true });
let ui: UiServer;
let viewer: VcClient;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  // The page reads through the ui process with viewer rights: what it shows, a viewer may see.
  viewer = await connectClient(rt.server.url, rt.server.auth!.viewer);
  ui = await startUiServer({ client: viewer, port: 0, assetsDir: 'dist/ui', hostPollMs: 300 });
  browser = await launchBrowser();
  page = await browser.context.newPage();
  // The page must work offline: any request off this server fails the test.
  const offsite: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(ui.url)) offsite.push(r.url());
  });
  (globalThis as { offsite?: string[] }).offsite = offsite;
  await page.goto(ui.url);
});

afterAll(async () => {
  await browser?.close();
  await ui?.close();
  await viewer?.close();
});

// Waits for the page (a layout takes a moment when actors appear); speed is measured in bench/.
const until = <T>(fn: () => Promise<T> | T) => expect.poll(fn, { timeout: 20_000, interval: 50 });
/** A GET with a chosen Host header (fetch would not let us set it). */
function get(path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: ui.port, path, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString();
        // An event stream never ends: its first message is enough.
        if (res.headers['content-type']?.startsWith('text/event-stream') && body.includes('\n\ndata: ')) req.destroy();
      });
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const row = (sid: string) => page.locator(`#sandboxes tr[data-id="${sid}"]`);
const node = (id: string) => page.locator(`[data-node="${id}"]`);

describe('the ui server', () => {
  it('answers only requests addressed to loopback, and only its own paths', async () => {
    const local = `127.0.0.1:${ui.port}`;
    expect((await get('/', local)).body).toMatch(/<title>virtactors/);
    expect((await get('/', `evil.example:${ui.port}`)).status).toBe(403);
    expect((await get('/../package.json', local)).status).toBe(404);
    expect((await get('/api/sandboxes/..%2Fx/live', local)).status).toBe(404);
    const charts = JSON.parse((await get('/api/charts', local)).body) as { charts: Array<{ name: string }> };
    expect(charts.charts.map((c) => c.name)).toEqual(['sandbox', 'container', 'process', 'agent', 'monitor']);
  });

  it('says at once on a sandbox stream that the sandbox does not exist', async () => {
    const r = await get('/api/sandboxes/nosuch/live', `localhost:${ui.port}`);
    expect(r.status).toBe(200);
    const first = JSON.parse(r.body.split('\n\ndata: ')[1]!.split('\n')[0]!);
    expect(first).toEqual({ kind: 'status', exists: false, message: 'sandbox nosuch does not exist' });
  });
});

describe('the live page', () => {
  it('lists the host, and a new sandbox as it is created', async () => {
    await until(() => page.locator('#hosts li[data-host="ui-host"]').textContent()).toMatch(/ui-host .*publishes inspection/);
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'ui-a' } });
    await until(() => row('ui-a').locator('.state').textContent()).toBe('ready');
    expect(await row('ui-a').locator('.host').textContent()).toBe('ui-host');
    await until(() => page.locator('#hosts li[data-host="ui-host"]').textContent()).toMatch(/· 1 sandbox ·/);
  });

  it('shows the sandbox running after start, in the list and in its diagram', async () => {
    await row('ui-a').click();
    await until(() => node('sandbox|sandbox.ready').getAttribute('class')).toMatch(/\bcurrent\b/);
    await rt.ok('SandboxStart', { sid: 'ui-a' });
    await until(() => row('ui-a').locator('.state').textContent()).toBe('running');
    await until(() => node('sandbox|sandbox.running').getAttribute('class')).toMatch(/\bcurrent\b/);
    expect(await node('sandbox|sandbox.ready').getAttribute('class')).not.toMatch(/\bcurrent\b/);
    // The monitor, invoked by running, is drawn inside it and shows its own state.
    await until(() => node('monitor|monitor.watching.waiting').getAttribute('class')).toMatch(/\bcurrent\b/);
    const running = await page.locator('[data-node="sandbox|sandbox.running"] > rect').boundingBox();
    const monitor = await page.locator('[data-actor="monitor"] > rect').boundingBox();
    expect(monitor!.x).toBeGreaterThan(running!.x);
    expect(monitor!.y).toBeGreaterThan(running!.y);
    expect(monitor!.x + monitor!.width).toBeLessThan(running!.x + running!.width);
    expect(monitor!.y + monitor!.height).toBeLessThan(running!.y + running!.height);
    // The history was replayed, then followed live.
    await until(() => page.locator('#history tr').allTextContents()).toEqual([
      expect.stringMatching(/#1.*sandbox.*create.*→ ready/),
      expect.stringMatching(/#2.*sandbox.*start.*→ running/),
    ]);
  });

  it('draws a container once it exists, and moves its state as it runs', async () => {
    await rt.ok('ContainerCreate', { sid: 'ui-a' }, { container: { id: 'web', args: ['sleep', '60'] } });
    await until(() => page.locator('[data-actor="c/web"]').count()).toBe(1);
    // Drawn inside the sandbox's actor box: containers are its children.
    const sandboxBox = await page.locator('[data-actor="sandbox"] > rect').boundingBox();
    const webBox = await page.locator('[data-actor="c/web"] > rect').boundingBox();
    expect(webBox!.y).toBeGreaterThan(sandboxBox!.y);
    expect(webBox!.y + webBox!.height).toBeLessThan(sandboxBox!.y + sandboxBox!.height + 1);
    await until(() => node('c/web|container.ready').getAttribute('class')).toMatch(/\bcurrent\b/);
    await rt.ok('ContainerStart', { sid: 'ui-a', cid: 'web' });
    await until(() => node('c/web|container.running').getAttribute('class')).toMatch(/\bcurrent\b/);
    await rt.ok('ContainerExec', { sid: 'ui-a', cid: 'web' }, { execId: 'ex1', args: ['sleep', '30'] });
    // A noop exec exits 0 at once: its chart shows it exited, its events say so.
    await until(() => node('x/web/ex1|process.exited').getAttribute('class')).toMatch(/\bcurrent\b/);
    await until(() => page.locator('#history tr').allTextContents()).toContainEqual(expect.stringMatching(/web \/ ex1.*exit.*→ exited.*status 0/));
    await until(() => row('ui-a').locator('.containers').textContent()).toBe('1');
    await rt.ok('SandboxDelete', { sid: 'ui-a' }, { force: true });
    await until(() => row('ui-a').count()).toBe(0);
  });

  it('marks a sandbox whose guest was killed as failed, with the reason', async () => {
    const sid = 'ui-kata';
    await rt.ok('SandboxCreate', {}, {
      // A long interval: no health check is in flight to race the backend's report of
      // the exit (a check cut off by the kill would say agent-unreachable instead).
      sandbox: { id: sid, agent: 'kata', backend: 'namespace', monitor: { intervalMs: 60_000, deadlineMs: 5000 }, containers: [{ id: 'web', args: ['sleep', '60'] }] },
      start: true,
    });
    await row(sid).click();
    await until(() => node('c/web|container.running').getAttribute('class')).toMatch(/\bcurrent\b/);
    const pid = rt.host.host.registry.get(sid).backend.pid;
    expect(pid).toBeGreaterThan(0);
    process.kill(pid!, 'SIGKILL');
    await until(() => row(sid).locator('.state').textContent()).toBe('failed');
    expect(await row(sid).locator('.reason').textContent()).toMatch(/^guest-exited: .*SIGKILL/);
    await until(() => page.locator('#failure').textContent()).toMatch(/failed: guest-exited — .*SIGKILL/);
    expect(await page.locator('#failure').isVisible()).toBe(true);
    await until(() => node('sandbox|sandbox.failed').getAttribute('class')).toMatch(/\bcurrent\b.*\bfailed\b|\bfailed\b.*\bcurrent\b/);
    // The container's exit (255: the guest is gone) reached its chart too.
    await until(() => node('c/web|container.stopped').getAttribute('class')).toMatch(/\bcurrent\b/);
    expect(await page.locator('#history tr.evt-fail').textContent()).toMatch(/reason guest-exited/);
    const shot = process.env.VC_UPDATE_DOCS === '1' ? 'docs/ui-failed-sandbox.png' : join(tmpdir(), `vc-ui-${process.pid}.png`);
    mkdirSync('docs', { recursive: true });
    await page.screenshot({ path: shot });
    expect(readFileSync(shot).subarray(1, 4).toString()).toBe('PNG');
    if (shot !== 'docs/ui-failed-sandbox.png') rmSync(shot);
    await rt.ok('SandboxDelete', { sid }, { force: true });
    expect((globalThis as { offsite?: string[] }).offsite).toEqual([]);
  });
});
