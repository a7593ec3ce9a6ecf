// What the `ui` process sends the page, as Server-Sent Events (one JSON message per
// `data:` line). Types only: the page's bundle imports them too.
import type { Event, Inspection } from '../bus/messages.gen.js';
import type { ChartModel } from '../charts/model.js';

export interface HostSummary {
  id: string;
  version: string;
  /** Whether the host publishes actor snapshots (VC_INSPECT=1); undefined: it did not say. */
  inspect?: boolean;
}

/** One row of the sandbox list. */
export interface SandboxSummary {
  id: string;
  host: string;
  state: string;
  agent: string;
  backend: string;
  containers: number;
  createdAt: string;
  failureReason?: string;
  failureMessage?: string;
  failedAt?: string;
}

/** On /api/live: the hosts and the sandbox list. */
export type ListMessage =
  | { kind: 'hosts'; hosts: HostSummary[] }
  /** Rows added or changed, and ids removed, in the order they happened. */
  | { kind: 'sandboxes'; upsert: SandboxSummary[]; remove: string[] };

/** On /api/sandboxes/<sid>/live: one sandbox's history, then its life. */
export type SandboxMessage =
  | { kind: 'status'; exists: true; host: string; inspect?: boolean }
  | { kind: 'status'; exists: false; message: string }
  /** A stored event, replayed or live. */
  | { kind: 'event'; event: Event }
  /** Every stored event so far has been sent; what follows is live. */
  | { kind: 'replayed' }
  | { kind: 'inspection'; inspection: Inspection };

/** GET /api/charts. */
export interface ChartsReply {
  charts: ChartModel[];
}
