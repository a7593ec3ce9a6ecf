// primeCodecs: the guest agent builds every message class of its calls before its first
// request (protobufjs generates a type's code at its first use, which a guest under TCG
// pays in tens of ms per call, on a warm-pool VM's claim path among others).
import { describe, expect, it } from 'vitest';
import { agentService, healthService, messageType, primeCodecs } from '../../protos/kata/index.js';

/** protobufjs replaces a type's prototype decode/encode with generated ones of its own once set up. */
const built = (name: string) => {
  const t = messageType(name);
  return Object.hasOwn(t, 'decode') && Object.hasOwn(t, 'encode') && Object.hasOwn(t, 'toObject') && Object.hasOwn(t, 'fromObject');
};

describe('kata codecs', () => {
  it("primeCodecs builds the requests and responses of every call, and the messages nested in them, before any call", () => {
    // Requests, responses, and messages that only appear nested (a storage, an OCI spec's process).
    const names = ['grpc.CreateSandboxRequest', 'grpc.Storage', 'google.protobuf.Empty', 'grpc.CreateContainerRequest', 'grpc.Spec', 'grpc.Process', 'grpc.StatsContainerResponse', 'grpc.CheckRequest', 'grpc.HealthCheckResponse'];
    expect(names.filter(built)).toEqual([]);
    primeCodecs(agentService, healthService);
    expect(names.filter((n) => !built(n))).toEqual([]);
    // What it built still round-trips a real message.
    const t = messageType('grpc.CreateSandboxRequest');
    const back = t.toObject(t.decode(t.encode(t.fromObject({ hostname: 'h', sandbox_id: 's', storages: [{ driver: '9p', source: 'tag' }] })).finish()));
    expect(back).toMatchObject({ hostname: 'h', sandbox_id: 's', storages: [{ driver: '9p', source: 'tag' }] });
  });
});
