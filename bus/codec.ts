// JSON codecs for bus messages, validated strictly against protos/bus.proto (through
// the generated descriptor): unknown fields, wrong types and oversized payloads are
// rejected with InvalidArgument before anything else sees the request.
import protobuf from 'protobufjs';
import { busDescriptor, type MessageName } from './messages.gen.js';
import { invalidArgument } from './errors.js';

/** Largest request body the runtime accepts, in bytes. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

const root = protobuf.Root.fromJSON(busDescriptor as unknown as protobuf.INamespace);
root.resolveAll();
const PACKAGE = 'virtactors.bus.v1';

export type { MessageName };

const typeCache = new Map<string, protobuf.Type>();
function typeOf(name: string): protobuf.Type {
  let type = typeCache.get(name);
  if (!type) {
    type = root.lookupType(`${PACKAGE}.${name}`);
    typeCache.set(name, type);
  }
  return type;
}

const INT_RANGES: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  sint32: [-(2 ** 31), 2 ** 31 - 1],
  sfixed32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
  fixed32: [0, 2 ** 32 - 1],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  sint64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  sfixed64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint64: [0, Number.MAX_SAFE_INTEGER],
  fixed64: [0, Number.MAX_SAFE_INTEGER],
};

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

function checkScalar(kind: string, value: unknown, path: string): void {
  const wrong = (want: string) => invalidArgument(`${path} must be ${want}, got ${describe(value)}`);
  switch (kind) {
    case 'string':
    case 'bytes':
      if (typeof value !== 'string') throw wrong('a string');
      return;
    case 'bool':
      if (typeof value !== 'boolean') throw wrong('true or false');
      return;
    case 'double':
    case 'float':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw wrong('a number');
      return;
    default: {
      const range = INT_RANGES[kind];
      if (!range) throw invalidArgument(`${path}: unsupported field type ${kind}`);
      if (typeof value !== 'number' || !Number.isInteger(value) || value < range[0] || value > range[1]) {
        throw wrong(`an integer from ${range[0]} to ${range[1]}`);
      }
    }
  }
}

function checkValue(field: protobuf.Field, value: unknown, path: string): void {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) {
    if (resolved.fullName === '.google.protobuf.Struct') {
      if (!isPlainObject(value)) throw invalidArgument(`${path} must be an object, got ${describe(value)}`);
      return;
    }
    checkMessage(resolved, value, path);
    return;
  }
  if (resolved instanceof protobuf.Enum) {
    if (typeof value !== 'string' || !(value in resolved.values)) {
      throw invalidArgument(`${path} must be one of ${Object.keys(resolved.values).join(', ')}`);
    }
    return;
  }
  checkScalar(field.type, value, path);
}

function checkMessage(type: protobuf.Type, value: unknown, path: string): void {
  if (!isPlainObject(value)) throw invalidArgument(`${path || 'body'} must be a JSON object, got ${describe(value)}`);
  for (const [key, v] of Object.entries(value)) {
    const at = path ? `${path}.${key}` : key;
    const field = type.fields[key];
    if (!field) {
      const known = type.fieldsArray.map((f) => f.name).join(', ') || 'none';
      throw invalidArgument(`unknown field ${at} (${type.name} accepts: ${known})`);
    }
    if (v === null) continue; // proto3 JSON: null is the default value
    if (field.map) {
      if (!isPlainObject(v)) throw invalidArgument(`${at} must be an object, got ${describe(v)}`);
      for (const [k, item] of Object.entries(v)) checkValue(field, item, `${at}.${k}`);
    } else if (field.repeated) {
      if (!Array.isArray(v)) throw invalidArgument(`${at} must be an array, got ${describe(v)}`);
      v.forEach((item, i) => checkValue(field, item, `${at}[${i}]`));
    } else {
      checkValue(field, v, at);
    }
  }
}

/** Validates an already parsed value against a bus message type. */
export function validate<T>(name: MessageName, value: unknown, path = ''): T {
  checkMessage(typeOf(name), value, path);
  return value as T;
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** Decodes a request body. An empty body is the empty message. */
export function decode<T>(name: MessageName, data: Uint8Array | undefined): T {
  if (!data || data.length === 0) return validate<T>(name, {});
  if (data.length > MAX_PAYLOAD_BYTES) {
    throw invalidArgument(`payload of ${data.length} bytes exceeds the limit of ${MAX_PAYLOAD_BYTES} bytes`);
  }
  let text: string;
  let parsed: unknown;
  try {
    text = decoder.decode(data);
    parsed = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`body is not valid UTF-8 JSON: ${(err as Error).message}`);
  }
  return validate<T>(name, parsed);
}

export function encode(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** Parses a reply or event without validation (the runtime wrote it). */
export function decodeTrusted<T>(data: Uint8Array): T {
  return JSON.parse(decoder.decode(data)) as T;
}
