// Graphviz DOT from the chart model: each machine and each compound state is a cluster,
// holding a point node for its initial pseudo-state; a transition that ends (or starts)
// on a compound state is drawn to that point and clipped at the cluster (lhead/ltail).
import { transitionLabel, type ChartModel, type ChartState } from './model.js';

const q = (s: string) => `"${s.replace(/["\\]/g, '\\$&')}"`;
const anchor = (id: string) => `${id}.__initial`;
/** Whether state `a` is `b` or lies inside it. */
const within = (a: string, b: string) => a === b || a.startsWith(`${b}.`);

export function toDot(models: ChartModel[]): string {
  const lines = [
    'digraph statecharts {',
    '  compound=true;',
    '  rankdir=LR;',
    '  fontname="Helvetica";',
    '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=11];',
    '  edge [fontname="Helvetica", fontsize=9];',
  ];
  const compound = new Set<string>();
  const state = (s: ChartState, pad: string) => {
    if (s.children.length === 0) {
      const extra = [s.invokes.length ? `invokes ${s.invokes.join(', ')}` : '', s.entry.length ? `entry / ${s.entry.join(', ')}` : '']
        .filter(Boolean)
        .join('\\n');
      const label = extra ? `${s.key}\\n${extra}` : s.key;
      lines.push(`${pad}${q(s.id)} [label="${label}"${s.type === 'final' ? ', peripheries=2' : ''}];`);
      return;
    }
    compound.add(s.id);
    lines.push(`${pad}subgraph ${q(`cluster_${s.id}`)} {`);
    lines.push(`${pad}  label=${q(s.invokes.length ? `${s.key} (invokes ${s.invokes.join(', ')})` : s.key)};`);
    lines.push(`${pad}  ${q(anchor(s.id))} [shape=point, label=""];`);
    for (const c of s.children) state(c, `${pad}  `);
    if (s.initial) lines.push(`${pad}  ${q(anchor(s.id))} -> ${q(s.initial)};`);
    lines.push(`${pad}}`);
  };
  for (const m of models) state(m.root, '  ');
  const end = (id: string) => (compound.has(id) ? anchor(id) : id);
  for (const m of models) {
    for (const t of m.transitions) {
      for (const to of t.targets.length ? t.targets : [t.source]) {
        const attrs = [`label=${q(transitionLabel(t))}`];
        // Clip at a cluster only when the other end lies outside it (Graphviz refuses otherwise).
        if (compound.has(to) && !within(t.source, to)) attrs.push(`lhead=${q(`cluster_${to}`)}`);
        if (compound.has(t.source) && !within(to, t.source)) attrs.push(`ltail=${q(`cluster_${t.source}`)}`);
        lines.push(`  ${q(end(t.source))} -> ${q(end(to))} [${attrs.join(', ')}];`);
      }
    }
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
