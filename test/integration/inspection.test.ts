// Live inspection for tooling: with inspection on, every actor snapshot of a sandbox is
// published on its inspect subject; the CLI exports the statechart definitions.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { decodeTrusted } from '../../bus/codec.js';
import { subjects } from '../../bus/subjects.js';
import type * as Bus from '../../bus/messages.gen.js';
import { useRuntime } from '../helpers/runtime.js';

const rt = useRuntime({ inspect: true });

describe('inspection', () => {
  it('publishes the snapshots of the sandbox and its children', async () => {
    const seen: Bus.Inspection[] = [];
    const sub = rt.client.nc.subscribe(subjects.inspectSandbox('insp'), { callback: (_e, m) => void seen.push(decodeTrusted(m.data)) });
    await rt.client.nc.flush();
    await rt.ok('SandboxCreate', {}, { sandbox: { id: 'insp', containers: [{ id: 'c', args: ['x'] }] }, start: true });
    await rt.client.nc.flush();
    await new Promise((r) => setTimeout(r, 100));
    sub.unsubscribe();
    const sandboxStates = seen.filter((i) => i.actorId === 'insp').map((i) => JSON.parse(i.state!));
    expect(sandboxStates).toContain('creating');
    expect(sandboxStates).toContain('ready');
    expect(sandboxStates.at(-1)).toBe('running');
    const containerStates = seen.filter((i) => i.actorId === 'c').map((i) => JSON.parse(i.state!));
    expect(containerStates).toEqual(expect.arrayContaining(['creating', 'ready', 'starting', 'running']));
    expect(seen.some((i) => i.actorId === 'op.monitor' && JSON.parse(i.state!)?.watching === 'waiting')).toBe(true);
    await rt.ok('SandboxDelete', { sid: 'insp' }, { force: true });
  });

  it('exports every statechart definition with named parts', () => {
    const charts = JSON.parse(execFileSync(process.execPath, ['dist/bin/virtactors.js', 'statecharts'], { encoding: 'utf8' }));
    expect(Object.keys(charts).sort()).toEqual(['agent', 'container', 'monitor', 'process', 'sandbox']);
    expect(Object.keys(charts.sandbox.states)).toEqual(expect.arrayContaining(['ready', 'running', 'paused', 'stopped', 'failed', 'deleted']));
    expect(charts.sandbox.states.running.invoke[0].src).toBe('monitor');
    expect(charts.sandbox.states.running.description).toMatch(/monitor/);
  });
});
