// primeCodecs: a guest agent in a VM builds CreateSandbox's message classes before its
// first request (protobufjs generates a type's code at its first use, which a guest under
// TCG pays in tens of ms: on a warm-pool VM's claim path), and only those it is asked for.
import { describe, expect, it } from 'vitest';
import { agentService, healthService, messageType, primeCodecs } from '../../protos/kata/index.js';

/** protobufjs replaces a type's prototype decode/encode with generated ones of its own once set up. */
const built = (name: string) => {
  const t = messageType(name);
  return Object.hasOwn(t, 'decode') && Object.hasOwn(t, 'encode') && Object.hasOwn(t, 'toObject') && Object.hasOwn(t, 'fromObject');
};

describe('kata codecs', () => {
  it('primeCodecs builds the request and response of the calls named, and the messages nested in them, and no others', () => {
    // CreateSandbox's request holds storages; its response is Empty.
    const asked = ['grpc.CreateSandboxRequest', 'grpc.Storage', 'google.protobuf.Empty', 'grpc.CheckRequest', 'grpc.HealthCheckResponse'];
    const others = ['grpc.CreateContainerRequest', 'grpc.Spec', 'grpc.Process'];
    expect([...asked, ...others].filter(built)).toEqual([]);
    primeCodecs(agentService, ['CreateSandbox']);
    primeCodecs(healthService, ['Check']);
    expect(asked.filter((n) => !built(n))).toEqual([]);
    expect(others.filter(built)).toEqual([]);
    // What it built still round-trips a real message.
    const t = messageType('grpc.CreateSandboxRequest');
    const back = t.toObject(t.decode(t.encode(t.fromObject({ hostname: 'h', sandbox_id: 's', storages: [{ driver: '9p', source: 'tag' }] })).finish()));
    expect(back).toMatchObject({ hostname: 'h', sandbox_id: 's', storages: [{ driver: '9p', source: 'tag' }] });
  });
});
