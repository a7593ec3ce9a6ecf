// The opt-in hook for Stately's inspector (@statelyai/inspect): off unless
// VC_STATELY_INSPECT is set. `1` starts the package's relay (a small HTTP + WebSocket
// server; open its page to see the actors in Stately's hosted inspector, which needs
// the internet); a ws:// URL joins a relay already running. Loaded only when asked for,
// so a host without it pays nothing.
import type { InspectionEvent } from 'xstate';
import type { Logger } from 'pino';

export interface StatelyHook {
  observe(event: InspectionEvent): void;
  stop(): void;
}

export const DEFAULT_STATELY_PORT = 8080;

/**
 * Specs carry container environments (which may hold secrets) and agent settings, in
 * contexts, inputs and events alike: the hosted inspector gets only their ids. A copy,
 * bounded in depth, that also cuts the cycles actor references make.
 */
export function withoutSpecs(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (!value || typeof value !== 'object') return value;
  if (seen.has(value) || depth > 12) return '[…]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => withoutSpecs(v, depth + 1, seen));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === 'spec' && v && typeof v === 'object') out[k] = { id: (v as { id?: unknown }).id };
    else if (k === 'env' && Array.isArray(v)) out[k] = `[${v.length} variables]`;
    else out[k] = withoutSpecs(v, depth + 1, seen);
  }
  return out;
}

export async function statelyInspector(setting: string | undefined, log: Logger, port = DEFAULT_STATELY_PORT): Promise<StatelyHook | undefined> {
  if (!setting || setting === '0') return undefined;
  let url = setting;
  let relay: { stop(): void } | undefined;
  if (setting === '1') {
    const { createInspectorServer } = await import('@statelyai/inspect/server');
    relay = createInspectorServer({ port, autoOpen: false });
    url = `ws://127.0.0.1:${port}`;
    log.info({ url: `http://localhost:${port}` }, 'Stately inspector relay: open this page (the inspector itself is hosted and needs the internet)');
  } else if (!/^wss?:\/\//.test(setting)) {
    throw new Error('VC_STATELY_INSPECT must be 1 (start a relay) or a ws:// URL of one');
  }
  const { createWebSocketInspector } = await import('@statelyai/inspect');
  const inspector = createWebSocketInspector({ url, serialize: (e) => withoutSpecs(e) as typeof e });
  log.info({ url }, 'sending actor inspection to the Stately inspector');
  return {
    observe: (event) => inspector.inspect.next?.(event),
    stop() {
      inspector.stop();
      relay?.stop();
    },
  };
}
