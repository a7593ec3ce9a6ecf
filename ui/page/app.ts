// The live page: hosts and sandboxes on the left, the chosen sandbox's statechart and
// event history on the right. Everything arrives from the `ui` process as Server-Sent
// Events; the page holds no bus connection of its own.
import type { ChartModel } from '../../charts/model.js';
import type { Event } from '../../bus/messages.gen.js';
import type { ChartsReply, HostSummary, ListMessage, SandboxMessage, SandboxSummary } from '../protocol.js';
import { SandboxView } from './sandbox-view.js';
import { currentNodes, layout, render, structureKey, structureOf } from './diagram.js';

const $ = <T extends Element>(sel: string) => document.querySelector(sel) as T;

// ---- the list ----------------------------------------------------------------------

const rows = new Map<string, HTMLTableRowElement>();
/** Each listed sandbox's host, for the hosts' counts. */
const hostOfRow = new Map<string, string>();

function cell(row: HTMLTableRowElement, cls: string): HTMLTableCellElement {
  return row.querySelector(`.${cls}`) as HTMLTableCellElement;
}

function fillRow(row: HTMLTableRowElement, s: SandboxSummary): void {
  cell(row, 'id').textContent = s.id;
  const state = cell(row, 'state');
  state.textContent = s.state;
  state.className = `state state-${s.state}`;
  cell(row, 'host').textContent = s.host;
  cell(row, 'agent').textContent = `${s.agent} / ${s.backend}`;
  cell(row, 'containers').textContent = String(s.containers);
  cell(row, 'reason').textContent = s.failureReason ? `${s.failureReason}: ${s.failureMessage ?? ''}` : '';
}

function newRow(s: SandboxSummary): HTMLTableRowElement {
  const row = document.createElement('tr');
  row.dataset.id = s.id;
  for (const cls of ['id', 'state', 'host', 'agent', 'containers', 'reason']) {
    const td = document.createElement('td');
    td.className = cls;
    row.appendChild(td);
  }
  row.addEventListener('click', () => {
    location.hash = `#${encodeURIComponent(s.id)}`;
  });
  if (s.id === selected) row.classList.add('selected');
  return row;
}

let hosts: HostSummary[] = [];

function applyList(m: ListMessage): void {
  if (m.kind === 'hosts') {
    hosts = m.hosts;
    return renderHosts();
  }
  const body = $<HTMLTableSectionElement>('#sandboxes tbody');
  const added = document.createDocumentFragment();
  for (const s of m.upsert) {
    let row = rows.get(s.id);
    if (!row) {
      row = newRow(s);
      rows.set(s.id, row);
      added.appendChild(row);
    }
    fillRow(row, s);
    hostOfRow.set(s.id, s.host);
  }
  for (const id of m.remove) {
    rows.get(id)?.remove();
    rows.delete(id);
    hostOfRow.delete(id);
  }
  if (added.childNodes.length) insertSorted(body, added);
  $('#count').textContent = `${rows.size} sandbox${rows.size === 1 ? '' : 'es'}`;
  renderHosts();
}

/** Keeps rows in id order; a batch of new rows is merged in once. */
function insertSorted(body: HTMLTableSectionElement, added: DocumentFragment): void {
  const fresh = [...added.children] as HTMLTableRowElement[];
  if (body.children.length === 0) {
    fresh.sort((a, b) => a.dataset.id!.localeCompare(b.dataset.id!));
    body.append(...fresh);
    return;
  }
  const all = [...(body.children as HTMLCollectionOf<HTMLTableRowElement>), ...fresh].sort((a, b) => a.dataset.id!.localeCompare(b.dataset.id!));
  body.append(...all);
}

/** Each host with how many of the listed sandboxes it holds. */
function renderHosts(): void {
  const ul = $<HTMLUListElement>('#hosts');
  const held = new Map<string, number>();
  for (const host of hostOfRow.values()) held.set(host, (held.get(host) ?? 0) + 1);
  ul.replaceChildren(
    ...hosts.map((h) => {
      const li = document.createElement('li');
      li.dataset.host = h.id;
      const inspect = h.inspect === undefined ? '' : h.inspect ? ' · publishes inspection' : ' · no inspection (VC_INSPECT=1 adds it)';
      const n = held.get(h.id) ?? 0;
      li.textContent = `${h.id} (${h.version}) · ${n} sandbox${n === 1 ? '' : 'es'}${inspect}`;
      return li;
    }),
  );
  if (!hosts.length) ul.innerHTML = '<li class="none">no host answers</li>';
}

// ---- one sandbox -------------------------------------------------------------------

let charts = new Map<string, ChartModel>();
let selected = '';
let feed: EventSource | undefined;
let view: SandboxView | undefined;
let nodes = new Map<string, SVGGElement>();
let lit: SVGGElement[] = [];
let drawnKey = '';
let laying: Promise<void> | undefined;
let layoutAgain = false;

function select(id: string): void {
  if (id === selected && feed) return;
  feed?.close();
  rows.get(selected)?.classList.remove('selected');
  selected = id;
  rows.get(id)?.classList.add('selected');
  $('#detail').classList.toggle('empty', !id);
  if (!id) return;
  resetView(id);
  feed = new EventSource(`/api/sandboxes/${encodeURIComponent(id)}/live`);
  feed.onmessage = (m) => onSandboxMessage(JSON.parse(m.data) as SandboxMessage);
}

function resetView(id: string): void {
  view = new SandboxView(id);
  $('#detail-title').textContent = `sandbox ${id}`;
  $('#detail-note').textContent = '';
  $('#history tbody').replaceChildren();
  $('#replay').textContent = 'replaying VC_EVENTS…';
  drawnKey = '';
  nodes = new Map();
  lit = [];
  $<SVGSVGElement>('#diagram').replaceChildren();
  showFailure();
  relayout();
}

function onSandboxMessage(m: SandboxMessage): void {
  if (!view) return;
  switch (m.kind) {
    case 'status':
      // A reconnected stream starts over from the history.
      if (view.history.length) resetView(view.id);
      $('#detail-note').textContent = m.exists
        ? m.inspect === false
          ? `on host ${m.host}, which does not publish actor snapshots: states come from events (start it with VC_INSPECT=1 for every state)`
          : `on host ${m.host}`
        : `${m.message} (history only)`;
      return;
    case 'replayed':
      $('#replay').textContent = `${view.history.length} events replayed from VC_EVENTS · live`;
      return;
    case 'event':
      if (view.applyEvent(m.event)) relayout();
      appendHistory(m.event);
      showFailure();
      break;
    case 'inspection':
      if (view.applyInspection(m.inspection)) relayout();
      break;
  }
  highlight();
}

function appendHistory(e: Event): void {
  const tr = document.createElement('tr');
  tr.className = `evt evt-${e.type}`;
  const who = e.containerId ? `${e.containerId}${e.execId ? ` / ${e.execId}` : ''}` : 'sandbox';
  const detail = [
    e.exitStatus !== undefined && (e.type === 'exit' || e.type === 'fail') ? `status ${e.exitStatus}` : '',
    e.reason ? `reason ${e.reason}` : '',
    e.message ?? '',
  ].filter(Boolean).join(' · ');
  for (const text of [`#${e.seq}`, (e.time ?? '').slice(11, 23), who, e.type ?? '', `→ ${e.state ?? ''}`, detail]) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.appendChild(td);
  }
  const body = $<HTMLTableSectionElement>('#history tbody');
  body.appendChild(tr);
  const box = $<HTMLElement>('#history-box');
  box.scrollTop = box.scrollHeight;
}

function showFailure(): void {
  const box = $<HTMLElement>('#failure');
  const f = view?.sandbox.value === 'failed' ? view.failure : undefined;
  box.hidden = !f;
  if (f) box.textContent = `failed: ${f.reason} — ${f.message} (${f.at})`;
}

/** Marks the current state of every actor; cheap, runs on every message. */
function highlight(): void {
  if (!view) return;
  for (const g of lit) g.classList.remove('current', 'failed');
  lit = [];
  const { current, failed } = currentNodes(view, charts);
  for (const id of current) {
    const g = nodes.get(id);
    if (!g) continue;
    g.classList.add('current');
    if (failed.includes(id)) g.classList.add('failed');
    lit.push(g);
  }
}

/** Lays the diagram out again when actors came or went; one layout at a time. */
function relayout(): void {
  if (laying) {
    layoutAgain = true;
    return;
  }
  laying = (async () => {
    do {
      layoutAgain = false;
      const v = view;
      if (!v || !charts.size) break;
      const structure = structureOf(v, charts);
      const key = `${v.id}:${structureKey(structure)}`;
      if (key === drawnKey) continue;
      const laid = await layout(structure, charts);
      if (view !== v) continue;
      nodes = render($<SVGSVGElement>('#diagram'), laid);
      fitDiagram();
      drawnKey = key;
      lit = [];
      highlight();
    } while (layoutAgain);
  })()
    .catch((err) => {
      $('#detail-note').textContent = `layout failed: ${(err as Error).message}`;
    })
    .finally(() => {
      laying = undefined;
    });
}

/** The whole diagram in its box, or at its own size (scrolling); a click switches. */
let actualSize = false;
function fitDiagram(): void {
  const svg = $<SVGSVGElement>('#diagram');
  const w = Number(svg.dataset.width ?? 0);
  const h = Number(svg.dataset.height ?? 0);
  svg.setAttribute('width', actualSize ? String(w) : '100%');
  svg.setAttribute('height', actualSize ? String(h) : '100%');
  $('#zoom').textContent = actualSize ? 'fit' : 'actual size';
}

// ---- start -------------------------------------------------------------------------

async function main(): Promise<void> {
  const reply = (await (await fetch('/api/charts')).json()) as ChartsReply;
  charts = new Map(reply.charts.map((c) => [c.name, c]));
  const list = new EventSource('/api/live');
  list.onmessage = (m) => applyList(JSON.parse(m.data) as ListMessage);
  list.onopen = () => $('#connection').classList.remove('down');
  list.onerror = () => $('#connection').classList.add('down');
  $('#zoom').addEventListener('click', () => {
    actualSize = !actualSize;
    fitDiagram();
  });
  const fromHash = () => select(decodeURIComponent(location.hash.slice(1)));
  window.addEventListener('hashchange', fromHash);
  fromHash();
}

void main();
