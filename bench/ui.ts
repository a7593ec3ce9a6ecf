// The live page in headless Chromium against the bench's runtime: how long a transition
// takes from the runtime (the event's own timestamp, set at the transition) to the
// page's DOM showing it, in the diagram (events path: VC_EVENTS → ui process → SSE)
// and in the list (the live events and the list command → SSE); and how long the list
// takes to render 1,000 sandboxes (noop ones), with the same latencies while they are listed.
import type { Page } from 'playwright-core';
import type { VcClient } from '../bus/client.js';
import { decodeTrusted } from '../bus/codec.js';
import { subjects } from '../bus/subjects.js';
import type * as Bus from '../bus/messages.gen.js';
import type { RuntimeHost } from '../runtime/host.js';
import { startUiServer } from '../ui/server.js';
import { launchBrowser } from '../test/helpers/browser.js';
import { round, summarize, throughput, type Latency } from './stats.js';

export interface UiFigures {
  chromium: string;
  transitionToDom: { diagram: Latency; list: Latency };
  listed: number;
  renderList: Latency;
  transitionToDomWhileListed: { diagram: Latency; list: Latency };
}

// Records, in the page, the wall-clock time at which each state shows: in the diagram
// (a node gets `current`) and in the list (the row's state cell changes), and when the
// list's row count last changed. Plain JS text: a transpiled function could carry helper
// calls the page does not have.
const OBSERVER = `
  window.seen = [];
  const now = () => performance.timeOrigin + performance.now();
  new MutationObserver((records) => {
    const body = document.querySelector('#sandboxes tbody');
    if (body && body.children.length !== (window.rows && window.rows.n)) window.rows = { n: body.children.length, t: performance.now() };
    for (const r of records) {
      const target = r.target;
      const node = r.type === 'attributes' ? target.getAttribute('data-node') : null;
      if (node && node.startsWith('sandbox|sandbox.') && target.classList.contains('current')) {
        window.seen.push({ where: 'diagram', state: node.slice('sandbox|sandbox.'.length), t: now() });
      }
      const cell = r.type === 'characterData' ? target.parentElement : r.type === 'childList' ? target : null;
      if (cell && cell.classList && cell.classList.contains('state') && cell.closest('tr') && cell.closest('tr').getAttribute('data-id') === 'ui-lat') {
        window.seen.push({ where: 'list', state: cell.textContent, t: now() });
      }
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['class'], childList: true, characterData: true });
`;

async function transitions(client: VcClient, page: Page, sid: string, samples: number): Promise<{ diagram: Latency; list: Latency }> {
  const times = new Map<number, number>();
  // The events as they are published (core NATS sees JetStream publishes too).
  const sub = client.nc.subscribe(subjects.sandboxEvents(sid), {
    callback: (_e, m) => {
      const e = decodeTrusted<Bus.Event>(m.data);
      if (!e.containerId) times.set(Number(e.seq), Date.parse(e.time ?? ''));
    },
  });
  const diagram: number[] = [];
  const list: number[] = [];
  let seq = Number((await client.call('SandboxStatus', { sid })).sandbox?.lastEventSeq ?? 0);
  try {
    for (let i = 0; i < samples; i++) {
      const to = i % 2 === 0 ? 'paused' : 'running';
      await page.evaluate(() => {
        (window as unknown as { seen: unknown[] }).seen = [];
      });
      await client.call(to === 'paused' ? 'SandboxPause' : 'SandboxResume', { sid });
      seq++;
      const shown = await page.waitForFunction(
        (state) => {
          const seen = (window as unknown as { seen: Array<{ where: string; state: string; t: number }> }).seen;
          const d = seen.find((s) => s.where === 'diagram' && s.state === state);
          const l = seen.find((s) => s.where === 'list' && s.state === state);
          return d && l ? { diagram: d.t, list: l.t } : false;
        },
        to,
        { polling: 'raf', timeout: 15_000 },
      ).catch(async (err) => {
        throw new Error(`${(err as Error).message}; the page saw ${JSON.stringify(await page.evaluate(() => (window as unknown as { seen: unknown }).seen))}`);
      });
      const t = (await shown.jsonValue()) as { diagram: number; list: number };
      while (!times.has(seq)) await new Promise((r) => setTimeout(r, 1));
      diagram.push(t.diagram - times.get(seq)!);
      list.push(t.list - times.get(seq)!);
    }
  } finally {
    sub.unsubscribe();
  }
  return { diagram: summarize(diagram), list: summarize(list) };
}

/** Loads the page afresh and returns ms from navigation to `n` rows in the list. */
async function renderList(page: Page, url: string, n: number): Promise<number> {
  await page.goto('about:blank');
  await page.goto(url);
  // The observer stamped the mutation that brought the rows in; polling only collects it.
  const t = await page.waitForFunction(
    (count) => {
      const rows = (window as unknown as { rows?: { n: number; t: number } }).rows;
      return rows && rows.n >= count ? rows.t : false;
    },
    n,
    { polling: 'raf', timeout: 60_000 },
  );
  return round((await t.jsonValue()) as number);
}

export async function benchUi(
  client: VcClient,
  _host: RuntimeHost,
  opts: { samples: number; listed: number; loads: number; assetsDir?: string },
): Promise<UiFigures> {
  const ui = await startUiServer({ client, port: 0, assetsDir: opts.assetsDir });
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    await page.addInitScript({ content: OBSERVER });
    const sid = 'ui-lat';
    await client.call('SandboxCreate', {}, { sandbox: { id: sid }, start: true });
    await page.goto(`${ui.url}#${sid}`);
    await page.waitForSelector('[data-node="sandbox|sandbox.running"].current', { timeout: 60_000 });
    const alone = await transitions(client, page, sid, opts.samples);

    await throughput(opts.listed, 64, (i) => client.call('SandboxCreate', {}, { sandbox: { id: `ui-list-${i}` } }));
    const loads: number[] = [];
    for (let i = 0; i < opts.loads; i++) loads.push(await renderList(page, ui.url, opts.listed + 1));
    await page.goto(`${ui.url}#${sid}`);
    await page.waitForSelector('[data-node="sandbox|sandbox.running"].current', { timeout: 60_000 });
    const listed = await transitions(client, page, sid, Math.max(10, Math.floor(opts.samples / 4)));

    await throughput(opts.listed, 64, (i) => client.call('SandboxDelete', { sid: `ui-list-${i}` }));
    await client.call('SandboxDelete', { sid }, { force: true });
    return {
      chromium: browser.context.browser()?.version() ?? '',
      transitionToDom: alone,
      listed: opts.listed,
      renderList: summarize(loads),
      transitionToDomWhileListed: listed,
    };
  } finally {
    await browser.close();
    await ui.close();
  }
}

export function uiTable(f: UiFigures | undefined): string[] {
  if (!f) return [];
  const cell = (l: Latency) => `${l.p50} / ${l.p99} (n=${l.n})`;
  return [
    `## Live page (\`virtactors ui\`) in headless Chromium ${f.chromium} (p50 / p99 ms)`,
    '',
    '| figure | diagram (events → SSE) | list (events and the list command → SSE) | target |',
    '|---|---|---|---|',
    `| transition in the runtime → page DOM shows it (noop pause/resume; from the event's timestamp) | ${cell(f.transitionToDom.diagram)} | ${cell(f.transitionToDom.list)} | p50 under 100 ms |`,
    `| the same while ${f.listed.toLocaleString('en')} sandboxes are listed | ${cell(f.transitionToDomWhileListed.diagram)} | ${cell(f.transitionToDomWhileListed.list)} | p50 under 100 ms |`,
    `| page load → list of ${(f.listed + 1).toLocaleString('en')} sandboxes rendered | ${cell(f.renderList)} | | measured |`,
    '',
  ];
}
