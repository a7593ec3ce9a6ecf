// Mermaid stateDiagram-v2 from the chart model: every machine is a composite state,
// nested states are composites inside it, transitions carry `EVENT [guard] / actions`.
import { transitionLabel, type ChartModel, type ChartState, type ChartTransition } from './model.js';

/** Mermaid ids are words: `sandbox.running` → `sandbox__running` (ids never hold `__`... keys are words). */
export const mermaidId = (stateId: string) => stateId.replace(/[^A-Za-z0-9]/g, '__');

// `;` ends a statement and `#` starts an entity in Mermaid labels; neither is in our names.
const text = (s: string) => s.replace(/[;#]/g, ' ');

function parentOf(id: string): string {
  const i = id.lastIndexOf('.');
  return i < 0 ? '' : id.slice(0, i);
}

export function toMermaid(models: ChartModel[]): string {
  const lines = ['stateDiagram-v2'];
  const byParent = new Map<string, ChartTransition[]>();
  for (const m of models) {
    for (const t of m.transitions) {
      // A transition is written inside the composite that holds its source, so Mermaid
      // keeps both ends where they belong; one from a machine's root sits at top level.
      const key = parentOf(t.source);
      const list = byParent.get(key) ?? [];
      list.push(t);
      byParent.set(key, list);
    }
  }
  const edges = (container: string, pad: string) => {
    for (const t of byParent.get(container) ?? []) {
      const from = mermaidId(t.source);
      for (const to of t.targets.length ? t.targets : [t.source]) lines.push(`${pad}${from} --> ${mermaidId(to)} : ${text(transitionLabel(t))}`);
    }
  };
  const state = (s: ChartState, pad: string) => {
    const id = mermaidId(s.id);
    if (s.children.length === 0) {
      lines.push(`${pad}state "${text(s.key)}" as ${id}`);
      if (s.invokes.length) lines.push(`${pad}${id} : invokes ${s.invokes.join(', ')}`);
      if (s.entry.length) lines.push(`${pad}${id} : entry / ${s.entry.join(', ')}`);
      if (s.type === 'final') lines.push(`${pad}${id} --> [*]`);
      return;
    }
    lines.push(`${pad}state "${text(s.key)}" as ${id} {`);
    if (s.initial) lines.push(`${pad}  [*] --> ${mermaidId(s.initial)}`);
    for (const c of s.children) state(c, `${pad}  `);
    edges(s.id, `${pad}  `);
    lines.push(`${pad}}`);
  };
  for (const m of models) state(m.root, '  ');
  edges('', '  ');
  return `${lines.join('\n')}\n`;
}
