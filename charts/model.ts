// A neutral graph of one statechart, read from its `machine.toJSON()` export: nested
// states, and transitions with their event, guard and action names. Mermaid, DOT and
// the live page all draw from this one model, so they show the same structure.

/** The JSON `toJSON()` gives once serialised (targets as `#id` strings). */
export interface StateNodeJson {
  id: string;
  key: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  initial?: { target: string[] };
  states?: Record<string, StateNodeJson>;
  transitions?: TransitionJson[];
  invoke?: Array<{ id: string; src: string }>;
  entry?: ActionJson[];
  exit?: ActionJson[];
  description?: string;
  tags?: string[];
}

interface TransitionJson {
  target?: string[];
  eventType: string;
  delay?: string | number;
  guard?: string | { type: string } | null;
  actions?: ActionJson[];
  source: string;
}

type ActionJson = string | { type: string };

export interface ChartState {
  /** The state's id, as XState writes it: `sandbox.running`, `monitor.watching.waiting`. */
  id: string;
  /** Its own name: `running`. */
  key: string;
  type: StateNodeJson['type'];
  /** The id of the initial child, for compound states. */
  initial?: string;
  description?: string;
  /** Actor logic this state invokes while active (`src` names). */
  invokes: string[];
  entry: string[];
  exit: string[];
  children: ChartState[];
}

export interface ChartTransition {
  source: string;
  /** Target state ids; empty for a transition that changes no state (actions only). */
  targets: string[];
  /** The event as XState names it (`STOP`, `xstate.done.actor.op.stopSandbox`). */
  eventType: string;
  /** A short label for diagrams: `STOP`, `done op.stopSandbox`, `after interval`. */
  event: string;
  guard?: string;
  actions: string[];
}

export interface ChartModel {
  /** The machine's name in exports: `sandbox`, `container` ... */
  name: string;
  root: ChartState;
  transitions: ChartTransition[];
}

// XState's own bookkeeping for delayed transitions, not actions a reader wrote.
const BUILTIN_ACTIONS = new Set(['xstate.raise', 'xstate.cancel']);

const actionName = (a: ActionJson): string => (typeof a === 'string' ? a : a.type);
const actionNames = (list: ActionJson[] | undefined) => (list ?? []).map(actionName).filter((n) => n && !BUILTIN_ACTIONS.has(n));
const stripHash = (target: string) => (target.startsWith('#') ? target.slice(1) : target);

/** `xstate.done.actor.op.x` → `done op.x`; `xstate.after.interval.monitor…` → `after interval`. */
export function eventLabel(t: Pick<TransitionJson, 'eventType' | 'delay'>): string {
  const e = t.eventType;
  if (t.delay !== undefined || e.startsWith('xstate.after.')) return `after ${t.delay ?? e.split('.')[2]}`;
  for (const [prefix, word] of [['xstate.done.actor.', 'done'], ['xstate.error.actor.', 'error'], ['xstate.done.state.', 'done']] as const) {
    if (e.startsWith(prefix)) return `${word} ${e.slice(prefix.length)}`;
  }
  return e === '' ? 'always' : e;
}

export function chartModel(name: string, json: StateNodeJson): ChartModel {
  const transitions: ChartTransition[] = [];
  const visit = (node: StateNodeJson): ChartState => {
    for (const t of node.transitions ?? []) {
      const guard = t.guard == null ? undefined : typeof t.guard === 'string' ? t.guard : t.guard.type;
      transitions.push({
        source: node.id,
        targets: (t.target ?? []).map(stripHash),
        eventType: t.eventType,
        event: eventLabel(t),
        ...(guard ? { guard } : {}),
        actions: actionNames(t.actions),
      });
    }
    const children = Object.values(node.states ?? {}).map(visit);
    const initial = node.initial?.target[0];
    return {
      id: node.id,
      key: node.key,
      type: node.type,
      ...(initial ? { initial: stripHash(initial) } : {}),
      ...(node.description ? { description: node.description } : {}),
      invokes: (node.invoke ?? []).map((i) => i.src),
      entry: actionNames(node.entry),
      exit: actionNames(node.exit),
      children,
    };
  };
  return { name, root: visit(json), transitions };
}

/** Every state of a chart, the root first, depth first. */
export function chartStates(model: ChartModel): ChartState[] {
  const out: ChartState[] = [];
  const walk = (s: ChartState) => {
    out.push(s);
    s.children.forEach(walk);
  };
  walk(model.root);
  return out;
}

/** `STOP [guard] / a, b`: the full label of a transition, as the exports print it. */
export function transitionLabel(t: ChartTransition): string {
  let label = t.event;
  if (t.guard) label += ` [${t.guard}]`;
  if (t.actions.length) label += ` / ${t.actions.join(', ')}`;
  return label;
}
