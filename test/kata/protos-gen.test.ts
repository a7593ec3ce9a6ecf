// protos/kata/protos.gen.ts must match protos/kata/*.proto (regenerate with
// `npx tsx scripts/gen-kata-protos.ts` after editing them), and the service definitions
// built from it must round-trip messages with the field numbers of the reference.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generate, generatedPath } from '../../scripts/gen-kata-protos.js';
import { agentService, healthService, type CreateContainerRequest, type StatsContainerResponse } from '../../protos/kata/index.js';

describe('kata protocol', () => {
  it('generated types are up to date with the .proto files', () => {
    expect(readFileSync(generatedPath, 'utf8')).toBe(generate());
  });

  it('uses the reference method paths', () => {
    expect(agentService.CreateContainer.path).toBe('/grpc.AgentService/CreateContainer');
    expect(agentService.PauseContainer.path).toBe('/grpc.AgentService/PauseContainer');
    expect(healthService.Check.path).toBe('/grpc.Health/Check');
    expect(Object.keys(agentService)).toHaveLength(24);
  });

  it('encodes with the reference field numbers', () => {
    // SignalProcessRequest: container_id=1, exec_id=2, signal=3.
    const bytes = agentService.SignalProcess.requestSerialize({ container_id: 'c', exec_id: 'e', signal: 15 });
    expect([...bytes]).toEqual([0x0a, 1, 0x63, 0x12, 1, 0x65, 0x18, 15]);
    // CreateContainerRequest.OCI = 6 → Spec.Root = 3 → Root.Path = 1.
    const req: CreateContainerRequest = { container_id: 'c', OCI: { Root: { Path: '/r' } } };
    const spec = agentService.CreateContainer.requestSerialize(req);
    expect([...spec]).toEqual([0x0a, 1, 0x63, 0x32, 6, 0x1a, 4, 0x0a, 2, 0x2f, 0x72]);
  });

  it('decodes with defaults filled in and 64-bit counters as numbers', () => {
    const res: StatsContainerResponse = {
      cgroup_stats: { cpu_stats: { cpu_usage: { total_usage: 2 ** 40, percpu_usage: [1, 2] } }, memory_stats: { stats: { cache: 7 } } },
    };
    const back = agentService.StatsContainer.responseDeserialize(agentService.StatsContainer.responseSerialize(res));
    expect(back.cgroup_stats?.cpu_stats?.cpu_usage?.total_usage).toBe(2 ** 40);
    expect(back.cgroup_stats?.cpu_stats?.cpu_usage?.percpu_usage).toEqual([1, 2]);
    expect(back.cgroup_stats?.memory_stats?.stats).toEqual({ cache: 7 });
    expect(back.cgroup_stats?.pids_stats?.current ?? 0).toBe(0);
    const list = agentService.ListProcesses.responseDeserialize(agentService.ListProcesses.responseSerialize({}));
    expect(list.process_list).toBeInstanceOf(Uint8Array);
    expect(list.process_list?.length).toBe(0);
  });
});
