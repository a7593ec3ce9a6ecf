// The statechart diagram of one sandbox: its chart with the monitor nested in `running`,
// each container's chart beside its states, each exec's inside its container. Laid out
// by ELK (elkjs, in a web worker), drawn as SVG; the current state of every actor is a
// class on its node, switched without a new layout.
import ELK from 'elkjs/lib/elk-api.js';
import type { ElkExtendedEdge, ElkLabel, ElkNode } from 'elkjs/lib/elk-api.js';
import type { ChartModel, ChartState } from '../../charts/model.js';
import type { ActorState, SandboxView } from './sandbox-view.js';

const SVG = 'http://www.w3.org/2000/svg';
const FONT = '12px system-ui, sans-serif';
const SMALL = '10px system-ui, sans-serif';

let measureCtx: CanvasRenderingContext2D | null = null;
function textWidth(text: string, font = FONT): number {
  if (typeof document === 'undefined') return text.length * 7;
  measureCtx ??= document.createElement('canvas').getContext('2d');
  if (!measureCtx) return text.length * 7;
  measureCtx.font = font;
  return Math.ceil(measureCtx.measureText(text).width);
}

/** Node ids: `<actor>|<state id>`; actors: `sandbox`, `monitor`, `c/<cid>`, `x/<cid>/<eid>`. */
export const nodeId = (actor: string, stateId: string) => `${actor}|${stateId}`;

/** Stands for the actor's key in a chart laid out once and drawn for every such actor. */
const SELF = '@';

interface Actor {
  key: string;
  chart: ChartModel;
  title: string;
  /** The actor that spawned it (drawn inside it); '' for the sandbox. */
  parent: string;
}

export interface Structure {
  actors: Actor[];
}

export function structureOf(view: SandboxView, charts: Map<string, ChartModel>): Structure {
  const chart = (n: string) => {
    const c = charts.get(n);
    if (!c) throw new Error(`no chart ${n}`);
    return c;
  };
  const actors: Actor[] = [{ key: 'sandbox', chart: chart('sandbox'), title: `sandbox ${view.id}`, parent: '' }];
  for (const [cid, c] of view.containers) {
    actors.push({ key: `c/${cid}`, chart: chart('container'), title: `container ${cid}`, parent: 'sandbox' });
    for (const eid of c.execs.keys()) actors.push({ key: `x/${cid}/${eid}`, chart: chart('process'), title: `exec ${eid}`, parent: `c/${cid}` });
  }
  return { actors };
}

export const structureKey = (s: Structure) => s.actors.map((a) => a.key).join(',');

const COMPOUND_PADDING = '[top=26,left=10,bottom=10,right=10]';

function stateNodes(key: string, s: ChartState, internal: Map<string, string[]>, inside: Map<string, ElkNode>): ElkNode {
  const id = nodeId(key, s.id);
  const children = s.children.map((c) => stateNodes(key, c, internal, inside));
  const extra = inside.get(s.id);
  if (children.length || extra) {
    const init: ElkNode[] = s.initial ? [{ id: `${id}|init`, width: 8, height: 8 }] : [];
    return {
      id,
      labels: [{ text: s.key, width: textWidth(s.key), height: 14 }],
      layoutOptions: { 'elk.padding': COMPOUND_PADDING, 'elk.nodeLabels.placement': 'INSIDE V_TOP H_LEFT' },
      children: [...init, ...children, ...(extra ? [extra] : [])],
    };
  }
  const lines = internal.get(s.id);
  const sub = lines?.length ? lines.join(' · ') : '';
  const width = Math.max(textWidth(s.key) + 20, sub ? textWidth(sub, SMALL) + 14 : 0, 56);
  return { id, width, height: sub ? 36 : 24, labels: [{ text: s.key }, ...(sub ? [{ text: sub, id: `${id}|sub` }] : [])] };
}

/** A chart's states (nested) and its transitions with a target, as ELK nodes and edges. */
function chartParts(key: string, chart: ChartModel, inside = new Map<string, ElkNode>()): { nodes: ElkNode[]; edges: ElkExtendedEdge[] } {
  const edges: ElkExtendedEdge[] = [];
  // Transitions that change no state are listed inside their state instead of drawn.
  const internal = new Map<string, string[]>();
  for (const t of chart.transitions) {
    if (t.targets.length === 0) {
      const list = internal.get(t.source) ?? [];
      if (!list.includes(t.event)) list.push(t.event);
      internal.set(t.source, list);
      continue;
    }
    for (const target of t.targets) {
      const label = t.guard ? `${t.event} [${t.guard}]` : t.event;
      edges.push({
        id: `${key}|e${edges.length}`,
        sources: [nodeId(key, t.source === chart.root.id ? `${t.source}|init` : t.source)],
        targets: [nodeId(key, target)],
        labels: [{ text: label, width: textWidth(label, SMALL), height: 12 } as ElkLabel],
      });
    }
  }
  const walk = (n: ChartState) => {
    if (n.initial && n.children.length) edges.push({ id: `${key}|i|${n.id}`, sources: [nodeId(key, `${n.id}|init`)], targets: [nodeId(key, n.initial)] });
    n.children.forEach(walk);
  };
  walk(chart.root);
  const root = stateNodes(key, chart.root, internal, inside);
  return { nodes: root.children ?? [], edges };
}

const CHART_LAYOUT = {
  'elk.algorithm': 'layered',
  // Downwards: a chart's long chain of states comes out nearer square than rightwards.
  'elk.direction': 'DOWN',
  // Nested states (and the monitor inside `running`) share their chart's layering, so
  // transitions between levels are routed too.
  'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
  'elk.spacing.nodeNode': '14',
  'elk.layered.spacing.nodeNodeBetweenLayers': '28',
  'elk.spacing.edgeLabel': '2',
  'elk.edgeLabels.placement': 'CENTER',
  'elk.padding': '[top=4,left=4,bottom=4,right=4]',
  'elk.json.shapeCoords': 'ROOT',
  'elk.json.edgeCoords': 'ROOT',
};

/**
 * The ELK graph of one kind of chart: the sandbox's (with the monitor it invokes drawn
 * inside `running`), or a container's or an exec's, for any actor of that kind.
 */
export function chartGraph(kind: 'sandbox' | 'container' | 'process', charts: Map<string, ChartModel>): ElkNode {
  const inside = new Map<string, ElkNode>();
  const extraEdges: ElkExtendedEdge[] = [];
  if (kind === 'sandbox') {
    const monitor = chartParts('monitor', charts.get('monitor')!);
    inside.set('sandbox.running', {
      id: 'actor:monitor',
      labels: [{ text: 'monitor (invoked)', width: textWidth('monitor (invoked)') + 8, height: 14 }],
      layoutOptions: { 'elk.padding': COMPOUND_PADDING, 'elk.nodeLabels.placement': 'INSIDE V_TOP H_LEFT' },
      children: monitor.nodes,
    });
    extraEdges.push(...monitor.edges);
  }
  const key = kind === 'sandbox' ? 'sandbox' : SELF;
  const parts = chartParts(key, charts.get(kind)!, inside);
  return { id: `chart:${kind}`, layoutOptions: CHART_LAYOUT, children: parts.nodes, edges: [...parts.edges, ...extraEdges] };
}

const KIND: Record<string, 'sandbox' | 'container' | 'process'> = { sandbox: 'sandbox', container: 'container', process: 'process' };

/**
 * The arrangement of a sandbox's actors: each actor a box holding its chart (a fixed
 * size, laid out once per kind) and the actors it spawned, packed by ELK.
 */
export function actorGraph(structure: Structure, sizes: Map<string, { width: number; height: number }>): ElkNode {
  const boxes = new Map<string, ElkNode>();
  for (const a of structure.actors) {
    const size = sizes.get(KIND[a.chart.name]!)!;
    boxes.set(a.key, {
      id: `actor:${a.key}`,
      labels: [{ text: a.title, width: textWidth(a.title) + 8, height: 14 }],
      layoutOptions: {
        'elk.algorithm': 'rectpacking',
        'elk.aspectRatio': '1.3',
        'elk.spacing.nodeNode': '14',
        'elk.padding': COMPOUND_PADDING,
        'elk.nodeLabels.placement': 'INSIDE V_TOP H_LEFT',
      },
      children: [{ id: `chart:${a.key}`, width: size.width, height: size.height }],
    });
  }
  const roots: ElkNode[] = [];
  for (const a of structure.actors) {
    const box = boxes.get(a.key)!;
    if (a.parent) boxes.get(a.parent)!.children!.push(box);
    else roots.push(box);
  }
  return { id: 'root', layoutOptions: { 'elk.algorithm': 'rectpacking', 'elk.json.shapeCoords': 'ROOT', 'elk.json.edgeCoords': 'ROOT' }, children: roots };
}

export interface Laid {
  charts: Map<string, ElkNode>;
  actors: ElkNode;
  structure: Structure;
}

const worker = () => new URL('/elk-worker.js', location.href).href;
let elk: InstanceType<typeof ELK> | undefined;
let chartCache: Promise<Map<string, ElkNode>> | undefined;

/** Lays the three kinds of chart out once, then only the actors' arrangement per change. */
export async function layout(structure: Structure, models: Map<string, ChartModel>): Promise<Laid> {
  elk ??= new ELK({ workerUrl: worker() });
  const e = elk;
  chartCache ??= Promise.all(
    (['sandbox', 'container', 'process'] as const).map(async (k) => [k, await e.layout(chartGraph(k, models))] as const),
  ).then((pairs) => new Map<string, ElkNode>(pairs));
  const charts = await chartCache;
  const sizes = new Map([...charts].map(([k, g]) => [k, { width: g.width ?? 0, height: g.height ?? 0 }]));
  return { charts, actors: await e.layout(actorGraph(structure, sizes)), structure };
}

function el<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>, parent?: Element): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  parent?.appendChild(e);
  return e;
}

/** Draws a laid-out sandbox; returns the state nodes by id, for highlighting. */
export function render(svg: SVGSVGElement, laid: Laid): Map<string, SVGGElement> {
  svg.replaceChildren();
  const width = Math.ceil((laid.actors.width ?? 0) + 4);
  const height = Math.ceil((laid.actors.height ?? 0) + 4);
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.dataset.width = String(width);
  svg.dataset.height = String(height);
  const defs = el('defs', {}, svg);
  const marker = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, defs);
  el('path', { d: 'M 0 0 L 10 5 L 0 10 z' }, marker);
  const nodes = new Map<string, SVGGElement>();
  const nodeLayer = el('g', { class: 'nodes' }, svg);
  const edgeLayer = el('g', { class: 'edges' }, svg);
  const kindOf = new Map(laid.structure.actors.map((a) => [a.key, KIND[a.chart.name]!]));

  const drawChart = (key: string, chart: ElkNode, dx: number, dy: number) => {
    const rename = (id: string) => (id.startsWith(`${SELF}|`) ? key + id.slice(SELF.length) : id);
    const draw = (n: ElkNode) => {
      const x = (n.x ?? 0) + dx;
      const y = (n.y ?? 0) + dy;
      const w = n.width ?? 0;
      const h = n.height ?? 0;
      if (n.id.endsWith('|init')) {
        el('circle', { cx: x + w / 2, cy: y + h / 2, r: 4, class: 'initial' }, nodeLayer);
        return;
      }
      const isActor = n.id.startsWith('actor:');
      const compound = (n.children?.length ?? 0) > 0;
      const g = el('g', { class: isActor ? 'actor' : compound ? 'state compound' : 'state' }, nodeLayer);
      if (isActor) g.setAttribute('data-actor', n.id.slice('actor:'.length));
      else g.setAttribute('data-node', rename(n.id));
      el('rect', { x, y, width: w, height: h, rx: isActor ? 4 : 8 }, g);
      const [title, sub] = n.labels ?? [];
      if (compound || isActor) {
        el('text', { x: x + 8, y: y + 16, class: isActor ? 'actor-title' : 'state-title' }, g).textContent = title?.text ?? '';
      } else {
        el('text', { x: x + w / 2, y: y + (sub ? 15 : h / 2 + 4), 'text-anchor': 'middle' }, g).textContent = title?.text ?? '';
        if (sub) el('text', { x: x + w / 2, y: y + 29, 'text-anchor': 'middle', class: 'internal' }, g).textContent = sub.text ?? '';
      }
      if (!isActor) nodes.set(rename(n.id), g);
      for (const c of n.children ?? []) draw(c);
    };
    for (const c of chart.children ?? []) draw(c);
    for (const e of chart.edges ?? []) {
      for (const s of e.sections ?? []) {
        const pts = [s.startPoint, ...(s.bendPoints ?? []), s.endPoint];
        el('path', { d: pts.map((p, i) => `${i ? 'L' : 'M'} ${p.x + dx} ${p.y + dy}`).join(' '), 'marker-end': 'url(#arrow)', class: 'edge' }, edgeLayer);
      }
      for (const l of e.labels ?? []) {
        el('text', { x: (l.x ?? 0) + dx, y: (l.y ?? 0) + dy + 9, class: 'edge-label' }, edgeLayer).textContent = l.text ?? '';
      }
    }
  };

  const drawActor = (n: ElkNode) => {
    const x = n.x ?? 0;
    const y = n.y ?? 0;
    if (n.id.startsWith('chart:')) {
      const key = n.id.slice('chart:'.length);
      drawChart(key, laid.charts.get(kindOf.get(key)!)!, x, y);
      return;
    }
    const g = el('g', { class: 'actor', 'data-actor': n.id.slice('actor:'.length) }, nodeLayer);
    el('rect', { x, y, width: n.width ?? 0, height: n.height ?? 0, rx: 4 }, g);
    el('text', { x: x + 8, y: y + 16, class: 'actor-title' }, g).textContent = n.labels?.[0]?.text ?? '';
    for (const c of n.children ?? []) drawActor(c);
  };
  for (const c of laid.actors.children ?? []) drawActor(c);
  return nodes;
}

/** The node ids an actor's state lights up: the state and every compound above it. */
function activeIds(actor: string, chart: ChartModel, s: ActorState | undefined): string[] {
  if (!s || !s.value) return [];
  const parts = s.value.split('.');
  return parts.map((_, i) => nodeId(actor, [chart.root.id, ...parts.slice(0, i + 1)].join('.')));
}

/** Every node to mark as current, and those of them that mark a failure. */
export function currentNodes(view: SandboxView, charts: Map<string, ChartModel>): { current: string[]; failed: string[] } {
  const current = [
    ...activeIds('sandbox', charts.get('sandbox')!, view.sandbox),
    ...activeIds('monitor', charts.get('monitor')!, view.monitorState()),
  ];
  for (const [cid, c] of view.containers) {
    current.push(...activeIds(`c/${cid}`, charts.get('container')!, c.state));
    for (const [eid, x] of c.execs) current.push(...activeIds(`x/${cid}/${eid}`, charts.get('process')!, x));
  }
  const failed = view.sandbox.value === 'failed' ? [nodeId('sandbox', 'sandbox.failed')] : [];
  return { current, failed };
}
