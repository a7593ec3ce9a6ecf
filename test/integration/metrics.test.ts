// The host's Prometheus endpoint, scraped over HTTP on a free loopback port: counters and
// gauges move with the commands sent.
import { describe, expect, it } from 'vitest';
import { DEFAULT_METRICS_ADDR, parseMetricsAddr } from '../../runtime/metrics.js';
import { scrape as scrapeHost, sample as sampleOf } from '../helpers/metrics.js';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime({ host: 'metrics-host', metricsAddr: { host: '127.0.0.1', port: 0 } });

const scrape = () => scrapeHost(rt);
const sample = (text: string, name: string, labels: Record<string, string> = {}) => sampleOf(text, name, labels, 'metrics-host');

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

  it("reports each guest's memory with what its backend measures: the namespace sandbox's cgroup, the process guest's resident sets", async () => {
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'mem-ns', agent: 'kata', backend: 'namespace' }, start: true });
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'mem-proc', agent: 'kata', backend: 'process' }, start: true });
    const text = await scrape();
    // Each guest is a Node process of some tens of MiB.
    expect(sample(text, 'virtactors_guest_memory_bytes', { sandbox: 'mem-ns', backend: 'namespace', measure: 'cgroup' })).toBeGreaterThan(8 * 1024 ** 2);
    expect(sample(text, 'virtactors_guest_memory_bytes', { sandbox: 'mem-proc', backend: 'process', measure: 'process-tree-rss' })).toBeGreaterThan(8 * 1024 ** 2);
    await rt.ok('SandboxDelete', { sid: 'mem-ns' }, { force: true });
    await rt.ok('SandboxDelete', { sid: 'mem-proc' }, { force: true });
    expect(await scrape()).not.toMatch(/virtactors_guest_memory_bytes\{sandbox="mem-/);
  });

  it('VC_METRICS_ADDR takes HOST:PORT or off', () => {
    expect(parseMetricsAddr(undefined)).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(DEFAULT_METRICS_ADDR).toBe('127.0.0.1:9464');
    expect(parseMetricsAddr('off')).toBeUndefined();
    expect(parseMetricsAddr('[::1]:9000')).toEqual({ host: '::1', port: 9000 });
    expect(() => parseMetricsAddr('9464')).toThrow(/VC_METRICS_ADDR must be HOST:PORT/);
  });
});
