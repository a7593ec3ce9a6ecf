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
 * Specs carry container environments (which may hold secrets) and agent settings; the
 * hosted inspector gets only their ids.
 */
function withoutSpecs<T extends object>(value: T): T {
  const spec = (value as { spec?: { id?: string } }).spec;
  return spec && typeof spec === 'object' ? { ...value, spec: { id: spec.id } } : value;
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
  const inspector = createWebSocketInspector({ url, sanitizeContext: withoutSpecs, sanitizeEvent: withoutSpecs });
  log.info({ url }, 'sending actor inspection to the Stately inspector');
  return {
    observe: (event) => inspector.inspect.next?.(event),
    stop() {
      inspector.stop();
      relay?.stop();
    },
  };
}
