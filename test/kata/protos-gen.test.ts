// protos/kata/protos.gen.ts must match protos/kata/*.proto (regenerate with
// `npx tsx scripts/gen-kata-protos.ts` after editing them), and the service definitions
// built from it must round-trip messages with the field numbers of the reference.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generate, generatedPath } from '../../scripts/gen-kata-protos.js';
import protobuf from 'protobufjs/light.js';
import { agentService, agentServiceMethods, healthMethods, healthService, int64Limit, int64Number, typeClosure, type CreateContainerRequest, type StatsContainerResponse } from '../../protos/kata/index.js';

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

  it('decodes with defaults filled in and 64-bit values as exact decimal strings', () => {
    const res: StatsContainerResponse = {
      cgroup_stats: {
        cpu_stats: { cpu_usage: { total_usage: 2 ** 40, percpu_usage: [1, '2'] } },
        // cgroup v1's "no limit": 2^63 rounded down to a page, past what a JS number holds exactly.
        memory_stats: { stats: { cache: 7 }, usage: { limit: '9223372036854771712' } },
      },
    };
    const back = agentService.StatsContainer.responseDeserialize(agentService.StatsContainer.responseSerialize(res));
    expect(back.cgroup_stats?.cpu_stats?.cpu_usage?.total_usage).toBe(String(2 ** 40));
    expect(back.cgroup_stats?.cpu_stats?.cpu_usage?.percpu_usage).toEqual(['1', '2']);
    expect(back.cgroup_stats?.memory_stats?.stats).toEqual({ cache: '7' });
    expect(back.cgroup_stats?.memory_stats?.usage?.limit).toBe('9223372036854771712');
    expect(back.cgroup_stats?.pids_stats?.current ?? '0').toBe('0');
    expect(int64Limit(back.cgroup_stats?.memory_stats?.usage?.limit)).toBe(0);
    expect(int64Limit('268435456')).toBe(268435456);
    expect(() => int64Number('9007199254740993')).toThrow(/does not fit a JavaScript number exactly/);
    expect(int64Number('-1')).toBe(-1);
  });

  it('carries Process.OOMScoreAdj as int64 (negative values too), as the stock agent does', () => {
    const req: CreateContainerRequest = { container_id: 'c', OCI: { Process: { OOMScoreAdj: -1000 } } };
    const back = agentService.CreateContainer.requestDeserialize(agentService.CreateContainer.requestSerialize(req));
    expect(back.OCI?.Process?.OOMScoreAdj).toBe('-1000');
    // Field 11, varint: -1000 as a 64-bit two's complement takes ten bytes.
    const bytes = [...agentService.CreateContainer.requestSerialize({ OCI: { Process: { OOMScoreAdj: -1 } } })];
    expect(bytes.slice(-11)).toEqual([0x58, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  });

  it('builds each message type from its own closure: only the types it names, each resolvable', () => {
    const messages = (tree: { nested?: Record<string, unknown> }, prefix = ''): string[] =>
      Object.entries(tree.nested ?? {}).flatMap(([name, node]) => {
        const n = node as { fields?: unknown; values?: unknown; nested?: Record<string, unknown> };
        return [...(n.fields || n.values ? [`${prefix}${name}`] : []), ...messages(n, `${prefix}${name}.`)];
      });
    // The first request a guest gets needs two classes, not the descriptor's ~90.
    expect(messages(typeClosure('grpc.CreateSandboxRequest')).sort()).toEqual(['grpc.CreateSandboxRequest', 'grpc.Storage']);
    expect(messages(typeClosure('grpc.HealthCheckResponse')).sort()).toEqual(['grpc.HealthCheckResponse', 'grpc.HealthCheckResponse.ServingStatus']);
    // Types named by nested fields come too (Spec → Linux → LinuxResources → LinuxMemory).
    expect(messages(typeClosure('grpc.CreateContainerRequest'))).toEqual(expect.arrayContaining(['grpc.Spec', 'grpc.Linux', 'grpc.LinuxResources', 'grpc.LinuxMemory', 'grpc.LinuxSeccompArg']));
    for (const { request, response } of [...Object.values(agentServiceMethods), ...Object.values(healthMethods)]) {
      for (const name of [request, response]) expect(() => protobuf.Root.fromJSON(typeClosure(name) as protobuf.INamespace).lookupType(name), name).not.toThrow();
    }
  });

  it('still decodes an empty list as empty bytes', () => {
    const list = agentService.ListProcesses.responseDeserialize(agentService.ListProcesses.responseSerialize({}));
    expect(list.process_list).toBeInstanceOf(Uint8Array);
    expect(list.process_list?.length).toBe(0);
  });
});
