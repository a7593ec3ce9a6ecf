// The host's Prometheus endpoint, scraped over HTTP on a free loopback port: counters and
// gauges move with the commands sent.
import { describe, expect, it } from 'vitest';
import { DEFAULT_METRICS_ADDR, parseMetricsAddr } from '../../runtime/metrics.js';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime({ host: 'metrics-host', metricsAddr: { host: '127.0.0.1', port: 0 } });

async function scrape(): Promise<string> {
  const url = rt.host.host.metricsUrl!;
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one sample, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries({ ...labels, host: 'metrics-host' });
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (want.every(([k, v]) => have[k] === v) && Object.keys(have).length === want.length) return Number(m[3]);
  }
  return 0;
}

describe('metrics', () => {
  it('serves Prometheus text on loopback whose counters move with the commands sent', async () => {
    expect(rt.host.host.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const before = await scrape();
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'm1' } });
    await rt.ok('ContainerCreate', { sid: 'm1' }, { container: { id: 'c1', args: ['true'] } });
    await expect(rt.client.call('SandboxStatus', { sid: 'nosuch' })).rejects.toMatchObject({ code: 'NotFound' });
    await expect(rt.client.call('ContainerStart', { sid: 'm1', cid: 'c1' })).rejects.toMatchObject({ code: 'FailedPrecondition' });
    const after = await scrape();

    const moved = (name: string, labels: Record<string, string>) => sample(after, name, labels) - sample(before, name, labels);
    expect(moved('virtactors_commands_total', { command: 'SandboxCreate', code: 'OK' })).toBe(1);
    expect(moved('virtactors_commands_total', { command: 'ContainerCreate', code: 'OK' })).toBe(1);
    expect(moved('virtactors_commands_total', { command: 'SandboxStatus', code: 'NotFound' })).toBe(1);
    expect(moved('virtactors_commands_total', { command: 'ContainerStart', code: 'FailedPrecondition' })).toBe(1);
    expect(moved('virtactors_command_duration_seconds_count', { command: 'SandboxCreate' })).toBe(1);
    expect(sample(after, 'virtactors_sandboxes', { state: 'ready' })).toBe(1);
    expect(sample(after, 'virtactors_containers', { state: 'ready' })).toBe(1);
    expect(sample(after, 'virtactors_events_pending')).toBe(0);
    await expect.poll(async () => sample(await scrape(), 'virtactors_events_published_total', { type: 'create' })).toBe(2);
    // Every metric is the project's own.
    const names = new Set(after.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]!));
    expect([...names].filter((n) => !n.startsWith('virtactors_'))).toEqual([]);

    await rt.ok('SandboxDelete', { sid: 'm1' }, { force: true });
    const gone = await scrape();
    expect(sample(gone, 'virtactors_sandboxes', { state: 'ready' })).toBe(0);
  });

  it('VC_METRICS_ADDR takes HOST:PORT or off', () => {
    expect(parseMetricsAddr(undefined)).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(DEFAULT_METRICS_ADDR).toBe('127.0.0.1:9464');
    expect(parseMetricsAddr('off')).toBeUndefined();
    expect(parseMetricsAddr('[::1]:9000')).toEqual({ host: '::1', port: 9000 });
    expect(() => parseMetricsAddr('9464')).toThrow(/VC_METRICS_ADDR must be HOST:PORT/);
  });
});
