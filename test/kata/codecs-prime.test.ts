// primeCodecs: a guest agent in a VM builds CreateSandbox's message classes before its
// first request (protobufjs generates a type's code at its first use, which a guest under
// TCG pays in tens of ms: on a warm-pool VM's claim path), and only those it is asked for.
import type protobuf from 'protobufjs/light.js';
import { describe, expect, it } from 'vitest';
import { agentService, healthService, primeCodecs } from '../../protos/kata/index.js';

/** protobufjs replaces a type's prototype codec with generated functions of its own once set up. */
const built = (t: protobuf.Type) => ['decode', 'encode', 'toObject', 'fromObject'].every((f) => Object.hasOwn(t, f));

describe('kata codecs', () => {
  it('primeCodecs builds the request and response of the calls named, and the messages nested in them, and no others', () => {
    const types = [...primeCodecs(agentService, ['CreateSandbox']), ...primeCodecs(healthService, ['Check'])];
    // CreateSandbox's request holds storages; its response is Empty.
    expect(types.map((t) => t.fullName.slice(1)).sort()).toEqual(['google.protobuf.Empty', 'grpc.CheckRequest', 'grpc.CreateSandboxRequest', 'grpc.HealthCheckResponse', 'grpc.Storage']);
    expect(types.filter((t) => !built(t)).map((t) => t.fullName)).toEqual([]);
    // Built once: asking again builds nothing more.
    expect(primeCodecs(agentService, ['CreateSandbox'])).toEqual([]);
    // The calls still carry a real message.
    const def = agentService.CreateSandbox;
    const request = { hostname: 'h', sandbox_id: 's', storages: [{ driver: '9p', source: 'tag', fstype: '9p', options: ['trans=virtio'], mount_point: '/m' }] };
    expect(def.requestDeserialize(def.requestSerialize(request))).toMatchObject(request);
  });
});
