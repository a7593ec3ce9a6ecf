// The `ui` process's HTTP server, on loopback only: the page and its bundled assets
// (from dist/ui, built by scripts/build.mjs; nothing is fetched from elsewhere), the
// chart models, and two Server-Sent Event streams (the list; one sandbox). The page
// never talks to NATS: this process is the bus client (see README.md).
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { VcClient } from '../bus/client.js';
import type { Logger } from 'pino';
import { ID_PATTERN } from '../bus/subjects.js';
import { machineCharts } from '../charts/index.js';
import { followSandbox, LiveList } from './live.js';
import type { ChartsReply } from './protocol.js';

export interface UiServerOptions {
  /** The bus client (the CLI's own): the page reaches the bus only through it. */
  client: VcClient;
  /** 0 picks a free port. */
  port?: number;
  /** Where the built page lives; default dist/ui beside the running bundle. */
  assetsDir?: string;
  log?: Logger;
  /** How often hosts are asked for (service discovery), ms. */
  hostPollMs?: number;
}

export interface UiServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export const DEFAULT_UI_PORT = 4480;

// The only files served: a fixed table, so no request path ever reaches the file system.
const ASSETS: Record<string, [file: string, type: string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/app.css': ['app.css', 'text/css; charset=utf-8'],
  '/elk-worker.js': ['elk-worker.js', 'text/javascript; charset=utf-8'],
};

const defaultAssets = () => fileURLToPath(new URL('../ui/', import.meta.url));

export async function startUiServer(opts: UiServerOptions): Promise<UiServer> {
  const dir = opts.assetsDir ?? defaultAssets();
  const files = new Map(Object.entries(ASSETS).map(([path, [file, type]]) => [path, { body: readFileSync(join(dir, file)), type }]));
  const charts = JSON.stringify({ charts: machineCharts() } satisfies ChartsReply);
  const list = new LiveList(opts.client, opts.hostPollMs, opts.log);
  await list.start();
  const streams = new Set<ServerResponse>();
  let port = 0;

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    // A page from another origin (DNS rebinding) must not read the bus through us.
    const hostHeader = req.headers.host ?? '';
    if (![`127.0.0.1:${port}`, `localhost:${port}`].includes(hostHeader)) {
      res.writeHead(403).end('forbidden host');
      return;
    }
    const url = new URL(req.url ?? '/', `http://${hostHeader}`);
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    const file = files.get(url.pathname);
    if (file) {
      res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-cache' }).end(file.body);
      return;
    }
    if (url.pathname === '/api/charts') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(charts);
      return;
    }
    if (url.pathname === '/api/live') {
      const send = sse(res, streams);
      const unsubscribe = list.subscribe(send);
      res.on('close', unsubscribe);
      return;
    }
    const m = /^\/api\/sandboxes\/([^/]+)\/live$/.exec(url.pathname);
    if (m && ID_PATTERN.test(m[1]!)) {
      const send = sse(res, streams);
      const stop = new AbortController();
      res.on('close', () => stop.abort());
      followSandbox(opts.client, m[1]!, send, stop.signal).catch((err) => {
        opts.log?.warn({ err, sandboxId: m[1] }, 'sandbox feed ended');
        res.end();
      });
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? DEFAULT_UI_PORT, '127.0.0.1', () => resolve());
  });
  port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    async close() {
      list.stop();
      for (const res of streams) res.end();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Opens an event stream on a response; returns its sender. */
function sse<T>(res: ServerResponse, open: Set<ServerResponse>): (message: T) => void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.socket?.setNoDelay(true);
  res.write(': open\n\n');
  open.add(res);
  res.on('close', () => open.delete(res));
  return (message) => {
    if (!res.writableEnded) res.write(`data: ${JSON.stringify(message)}\n\n`);
  };
}
