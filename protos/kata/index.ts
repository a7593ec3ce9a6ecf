// The kata agent protocol for both sides (guest agent and host driver): the message
// types, and gRPC service definitions whose (de)serializers come from the generated
// descriptor through protobufjs' light build, so nothing parses .proto text at run time.
// Message classes are built on first use of each method, or ahead (primeCodecs).
import type { MethodDefinition } from '@grpc/grpc-js';
import protobuf from 'protobufjs/light.js';
import { agentServiceMethods, healthMethods, kataDescriptor, type AgentServiceMethods, type HealthMethods, type Int64 } from './protos.gen.js';

export * from './protos.gen.js';

export const AGENT_SERVICE = 'grpc.AgentService';
export const HEALTH_SERVICE = 'grpc.Health';
/** The API version the 2018 agent reports in Version. */
export const API_VERSION = '0.0.1';
/** Trailing metadata key carrying the guest pid of a started process (our extension). */
export const PID_TRAILER = 'x-virtactors-pid';
/**
 * Our extension of StatsContainer: a key of `memory_stats.stats` (elsewhere the cgroup's
 * memory.stat, whose keys never contain a dot) carrying the OOM kills counted in the
 * container's cgroup (v1 memory.oom_control, v2 memory.events `oom_kill`). The 1.x
 * protocol has no OOM RPC (GetOOMEvent came with 2.x); a stock agent leaves the key out,
 * and the host then cannot tell an OOM kill inside a VM from another SIGKILL.
 */
export const OOM_KILL_STAT = 'virtactors.oom_kill';

type MethodTable<T> = { [M in keyof T]: { request: unknown; response: unknown } };

/** A service's methods, each typed with its request and response messages. */
export type TypedService<T extends MethodTable<T>> = {
  readonly [M in keyof T]: MethodDefinition<T[M]['request'], T[M]['response']>;
};

const SCALARS = new Set(['double', 'float', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64', 'bool', 'string', 'bytes']);

interface DescriptorNode {
  nested?: Record<string, DescriptorNode>;
  fields?: Record<string, { type: string; keyType?: string }>;
}

function nodeAt(path: readonly string[]): DescriptorNode | undefined {
  let node: DescriptorNode | undefined = kataDescriptor as DescriptorNode;
  for (const part of path) node = node?.nested?.[part];
  return node;
}

/**
 * The descriptor cut down to one message type and every type it refers to, resolved as
 * protobuf scopes names (innermost scope first). Building the classes of the whole
 * descriptor costs 10-15 ms; a guest's first call (CreateSandbox) needs three (its request,
 * the Storage it holds, and the empty reply).
 */
export function typeClosure(fullName: string): { nested: Record<string, DescriptorNode> } {
  const out: { nested: Record<string, DescriptorNode> } = { nested: {} };
  const included = new Set<string>();
  const include = (path: string[]) => {
    const key = path.join('.');
    if (included.has(key)) return;
    included.add(key);
    const node = nodeAt(path)!;
    let parent: { nested?: Record<string, DescriptorNode> } = out;
    for (const part of path.slice(0, -1)) {
      parent.nested ??= {};
      parent = parent.nested[part] ??= { nested: {} };
    }
    (parent.nested ??= {})[path.at(-1)!] = node;
    refer(path, node);
  };
  // A message's own nested types come with it; what its fields (and theirs) name is added.
  const refer = (scope: string[], node: DescriptorNode) => {
    for (const field of Object.values(node.fields ?? {})) {
      if (SCALARS.has(field.type)) continue;
      const name = field.type.split('.');
      for (let depth = scope.length; depth >= 0; depth--) {
        const path = [...scope.slice(0, depth), ...name];
        if (!nodeAt(path)) continue;
        // A type nested in a message comes with its outermost message.
        const outer = path.findIndex((_, i) => nodeAt(path.slice(0, i + 1))?.fields !== undefined);
        const unit = path.slice(0, outer < 0 ? path.length : outer + 1);
        const [inside, unitName] = [scope.join('.'), unit.join('.')];
        if (inside !== unitName && !inside.startsWith(`${unitName}.`)) include(unit);
        break;
      }
    }
    for (const [name, child] of Object.entries(node.nested ?? {})) refer([...scope, name], child);
  };
  include(fullName.split('.'));
  return out;
}

/** One message type, built from its closure only, on first use. */
function messageType(fullName: string): protobuf.Type {
  return protobuf.Root.fromJSON(typeClosure(fullName) as protobuf.INamespace).lookupType(fullName);
}

/** Decoded messages: every field present (defaults filled in), 64-bit values as exact decimal strings. */
const decodeOptions: protobuf.IConversionOptions = { longs: String, enums: Number, defaults: true, arrays: true, objects: true };

/** A type's generated code built, and that of every message type its fields hold. */
const primed = new Set<protobuf.Type>();
function primeType(t: protobuf.Type, out: protobuf.Type[]): void {
  if (primed.has(t)) return;
  primed.add(t);
  out.push(t);
  t.toObject(t.decode(t.encode(t.fromObject({})).finish()), decodeOptions);
  for (const f of t.fieldsArray) {
    const nested = f.resolve().resolvedType;
    if (nested instanceof protobuf.Type) primeType(nested, out);
  }
}

interface Codec<T> {
  serialize(value: T): Buffer;
  deserialize(bytes: Buffer): T;
  /** Builds the message class and its generated code now (an empty message both ways); adds the types it built to `out`. */
  prime(out: protobuf.Type[]): void;
}

function codec<T>(fullName: string): Codec<T> {
  let type: protobuf.Type | undefined;
  const get = () => (type ??= messageType(fullName));
  return {
    prime(out) {
      primeType(get(), out);
    },
    serialize(value) {
      const t = get();
      const bytes = t.encode(t.fromObject(value as Record<string, unknown>)).finish();
      return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    deserialize(bytes) {
      const t = get();
      return t.toObject(t.decode(bytes), decodeOptions) as T;
    },
  };
}

/** Per service and method, the codecs of its request and response, for primeCodecs. */
const codecs = new Map<object, Map<string, Codec<unknown>[]>>();

function service<T extends MethodTable<T>>(name: string, table: Record<keyof T & string, { request: string; response: string }>): TypedService<T> {
  const def: Record<string, MethodDefinition<unknown, unknown>> = {};
  const all = new Map<string, Codec<unknown>[]>();
  codecs.set(def, all);
  for (const [method, types] of Object.entries(table) as [string, { request: string; response: string }][]) {
    const req = codec<unknown>(types.request);
    const res = codec<unknown>(types.response);
    all.set(method, [req, res]);
    def[method] = {
      path: `/${name}/${method}`,
      originalName: method,
      requestStream: false,
      responseStream: false,
      requestSerialize: req.serialize,
      requestDeserialize: req.deserialize,
      responseSerialize: res.serialize,
      responseDeserialize: res.deserialize,
    };
  }
  return def as TypedService<T>;
}

export const agentService: TypedService<AgentServiceMethods> = service<AgentServiceMethods>(AGENT_SERVICE, agentServiceMethods);
export const healthService: TypedService<HealthMethods> = service<HealthMethods>(HEALTH_SERVICE, healthMethods);

export type AgentMethod = keyof AgentServiceMethods;
export type HealthMethod = keyof HealthMethods;

/** 2^62: cgroup v1 reports "no limit" as a page-rounded 2^63, v2 as "max" (the agent sends 2^63-1). */
const UNLIMITED_FROM = 1n << 62n;

function asBigInt(value: Int64 | undefined, what: string): bigint {
  if (value === undefined || value === '') return 0n;
  try {
    return BigInt(value);
  } catch {
    throw new RangeError(`${what}: ${JSON.stringify(value)} is not an integer`);
  }
}

/** A 64-bit value as a JS number, exactly; one past 2^53 is refused rather than rounded. */
export function int64Number(value: Int64 | undefined, what = 'value'): number {
  const n = asBigInt(value, what);
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new RangeError(`${what}: ${n} does not fit a JavaScript number exactly`);
  }
  return Number(n);
}

/** A limit from cgroup stats: 0 for "no limit" (the kernel's 2^63 or near it), else exact. */
export function int64Limit(value: Int64 | undefined, what = 'limit'): number {
  const n = asBigInt(value, what);
  return n >= UNLIMITED_FROM ? 0 : int64Number(n.toString(), what);
}

/**
 * Builds the message classes of these methods' requests and responses (and of the
 * messages nested in them) now rather than at their first call: protobufjs generates each
 * type's code on first use, which a guest under TCG pays in tens of ms per call; a guest
 * waiting in a warm pool pays it before its sandbox comes. (All of them would cost a TCG
 * guest over a second: the OCI spec alone has dozens.) Returns the types it built.
 */
export function primeCodecs<T extends MethodTable<T>>(service: TypedService<T>, methods: readonly (keyof T & string)[]): protobuf.Type[] {
  const built: protobuf.Type[] = [];
  for (const m of methods) for (const c of codecs.get(service)?.get(m) ?? []) c.prime(built);
  return built;
}
