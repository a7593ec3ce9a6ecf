// What the page knows about one sandbox: which actors it has (containers, execs, the
// monitor) and the state of each, from its stored events (stable states) and, when the
// host publishes them, its actor snapshots (every state, the -ing ones and the
// monitor's included). Whatever arrived last wins; both end on the same stable state.
// Pure: no DOM.
import type { Event, Inspection } from '../../bus/messages.gen.js';

export interface ActorState {
  /** Dotted state path inside the actor's chart: `running`, `watching.waiting`. */
  value: string;
  done: boolean;
}

export interface ContainerView {
  state: ActorState;
  execs: Map<string, ActorState>;
}

export interface Failure {
  reason: string;
  message: string;
  at: string;
}

/** `"running"` → `running`; `{"watching":"waiting"}` → `watching.waiting`. */
export function statePath(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [k, v] = Object.entries(value)[0] ?? [];
    return k === undefined ? '' : [k, statePath(v)].filter(Boolean).join('.');
  }
  return '';
}

export class SandboxView {
  sandbox: ActorState = { value: '', done: false };
  /** From snapshots only: the monitor sends no events. */
  monitor?: ActorState;
  readonly containers = new Map<string, ContainerView>();
  readonly history: Event[] = [];
  failure?: Failure;
  /** Whether any actor snapshot arrived (the host publishes inspection). */
  inspected = false;

  constructor(readonly id: string) {}

  private container(cid: string): { view: ContainerView; added: boolean } {
    let view = this.containers.get(cid);
    if (view) return { view, added: false };
    view = { state: { value: 'creating', done: false }, execs: new Map() };
    this.containers.set(cid, view);
    return { view, added: true };
  }

  /** Applies one stored event; true when an actor was added (the diagram changes shape). */
  applyEvent(e: Event): boolean {
    this.history.push(e);
    const state = { value: e.state ?? '', done: e.state === 'deleted' || e.state === 'exited' };
    if (!e.containerId) {
      this.sandbox = state;
      if (e.type === 'fail') this.failure = { reason: e.reason ?? '', message: e.message ?? '', at: e.time ?? '' };
      if (e.type === 'create' || e.type === 'start') this.failure = undefined;
      return false;
    }
    const { view, added } = this.container(e.containerId);
    if (!e.execId) {
      view.state = state;
      return added;
    }
    const isNew = !view.execs.has(e.execId);
    view.execs.set(e.execId, state);
    return added || isNew;
  }

  /** Applies one actor snapshot; true when an actor was added. */
  applyInspection(i: Inspection): boolean {
    const raw = JSON.parse(i.state ?? 'null') as unknown;
    // Invoked operations (promises) have no state value: nothing to draw.
    if (raw === null) return false;
    this.inspected = true;
    const state = { value: statePath(raw), done: i.status === 'done' };
    const path = (i.path || i.actorId || '').split('/');
    if (path.length === 1) {
      this.sandbox = state;
      return false;
    }
    if (path.length === 2 && path[1] === 'op.monitor') {
      this.monitor = state;
      return false;
    }
    if (path[1]!.startsWith('op.')) return false;
    const { view, added } = this.container(path[1]!);
    if (path.length === 2) {
      view.state = state;
      return added;
    }
    const isNew = !view.execs.has(path[2]!);
    view.execs.set(path[2]!, state);
    return added || isNew;
  }

  /**
   * The monitor's state to show: it is invoked by `running`, so it is shown only then
   * (or once it reported a failure). Without snapshots only its outer state is known.
   */
  monitorState(): ActorState | undefined {
    if (this.sandbox.value === 'running') return this.monitor && !this.monitor.done ? this.monitor : { value: 'watching', done: false };
    return this.monitor?.done ? this.monitor : undefined;
  }
}
