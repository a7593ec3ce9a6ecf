// The Mermaid and DOT exports parse with the tools' own parsers (Mermaid's, in headless
// Chromium from the package's browser bundle; Graphviz's `dot -Tsvg`) and name every
// state of every machine; the JSON export is each machine's toJSON().
import { execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { chartStates, exportCharts, machineCharts, machineNames, machines } from '../../charts/index.js';
import { mermaidId } from '../../charts/mermaid.js';
import { launchBrowser, type Browser } from '../helpers/browser.js';

const require = createRequire(import.meta.url);
const charts = machineCharts();
const everyState = charts.flatMap((m) => chartStates(m).map((s) => s.id));

describe('chart model', () => {
  it('holds every state and names every guard and action', () => {
    expect(charts.map((c) => c.name)).toEqual(machineNames);
    expect(everyState).toContain('sandbox.running');
    expect(everyState).toContain('monitor.watching.checking');
    expect(everyState).toContain('process.exited');
    // A guard that exports without a name would show as a bare, unexplained branch.
    for (const m of machineNames) {
      const raw = JSON.parse(JSON.stringify(machines[m].toJSON()));
      const guards = JSON.stringify(raw).match(/"guard":null/g) ?? [];
      expect(guards, `${m} has an unnamed guard`).toEqual([]);
    }
    const stopping = charts.find((c) => c.name === 'container')!.transitions.filter((t) => t.source === 'container.stopping' && t.eventType === 'PROCESS_EXITED');
    expect(stopping).toEqual([expect.objectContaining({ guard: 'exitPending', actions: ['recordExit', 'notifyExit'], targets: [] })]);
  });

  it('labels done, error and delayed transitions readably', () => {
    const labels = charts.flatMap((c) => c.transitions.map((t) => t.event));
    expect(labels).toContain('done op.createSandbox');
    expect(labels).toContain('error checkAgent');
    expect(labels).toContain('after interval');
  });
});

describe('JSON export', () => {
  it("is each machine's toJSON()", () => {
    const json = JSON.parse(exportCharts('json'));
    expect(Object.keys(json)).toEqual(machineNames);
    expect(json.sandbox).toEqual(JSON.parse(JSON.stringify(machines.sandbox.toJSON())));
  });
});

const hasDot = spawnSync('dot', ['-V']).status === 0;

describe('DOT export', () => {
  // Graphviz is installed by `npm run setup`; without it this part cannot be checked.
  it.skipIf(!hasDot)('renders with dot -Tsvg and names every state', () => {
    const dot = exportCharts('dot');
    const svg = execFileSync('dot', ['-Tsvg'], { input: dot, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    // Each atomic state is a node (<title> is its id); each compound state a cluster.
    const titles = new Set([...svg.matchAll(/<title>([^<]*)<\/title>/g)].map((m) => m[1]!.replace(/&#45;/g, '-')));
    for (const id of everyState) {
      const isCompound = charts.some((c) => chartStates(c).some((s) => s.id === id && s.children.length));
      expect(titles.has(isCompound ? `cluster_${id}` : id), `${id} missing from the SVG`).toBe(true);
    }
    // Every transition became an edge (targetless ones as loops).
    const edges = [...svg.matchAll(/class="edge"/g)].length;
    const initials = charts.reduce((n, c) => n + chartStates(c).filter((s) => s.children.length).length, 0);
    const transitions = charts.reduce((n, c) => n + c.transitions.reduce((k, t) => k + Math.max(1, t.targets.length), 0), 0);
    expect(edges).toBe(transitions + initials);
  });
});

describe('Mermaid export', () => {
  let browser: Browser;
  let page: Page;
  beforeAll(async () => {
    browser = await launchBrowser();
    page = await browser.context.newPage();
    await page.setContent('<!doctype html><html><body><div id="out"></div></body></html>');
    // The package's own browser bundle, from node_modules: no network.
    await page.addScriptTag({ path: require.resolve('mermaid/dist/mermaid.min.js') });
    await page.evaluate(() => (window as unknown as { mermaid: { initialize(o: object): void } }).mermaid.initialize({ startOnLoad: false }));
  });
  afterAll(async () => {
    await browser?.close();
  });

  const parse = (text: string) =>
    page.evaluate(async (t) => {
      const m = (window as unknown as { mermaid: { parse(t: string): Promise<{ diagramType: string }> } }).mermaid;
      try {
        return { ok: true as const, type: (await m.parse(t)).diagramType };
      } catch (err) {
        return { ok: false as const, error: String((err as Error).message ?? err) };
      }
    }, text);

  it('refuses broken text (the parser really runs)', async () => {
    expect((await parse('stateDiagram-v2\n  a --> : :: }')).ok).toBe(false);
  });

  it("parses with Mermaid's parser and renders every state", async () => {
    const text = exportCharts('mermaid');
    expect(await parse(text)).toEqual({ ok: true, type: 'stateDiagram' });
    const svg = await page.evaluate(async (t) => {
      const m = (window as unknown as { mermaid: { render(id: string, t: string): Promise<{ svg: string }> } }).mermaid;
      return (await m.render('charts', t)).svg;
    }, text);
    for (const id of everyState) expect(svg, `${id} missing from the rendered diagram`).toContain(`state-${mermaidId(id)}-`);
  });
});
