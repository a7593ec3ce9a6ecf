// Reading a host's Prometheus endpoint in tests: one scrape over HTTP, and one sample of it.
import { expect } from 'vitest';
import type { RuntimeContext } from './runtime.js';

/** The host's metrics text (the host must serve them: metricsAddr in useRuntime). */
export async function scrape(rt: RuntimeContext): Promise<string> {
  const url = rt.host.host.metricsUrl!;
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of the sample with exactly these labels (and the host's), 0 when absent. */
export function sample(text: string, name: string, labels: Record<string, string>, host: string): number {
  const want = Object.entries({ ...labels, host });
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (want.every(([k, v]) => have[k] === v) && Object.keys(have).length === want.length) return Number(m[3]);
  }
  return 0;
}
