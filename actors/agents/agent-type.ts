// Exact agent type parsing and per-type config decoding. Unlike the 2018 runtime, an
// unknown type is an error (never a silent noop) and a config that fails to decode is
// an error (never a value).
import { invalidArgument } from '../../bus/errors.js';
import { validate } from '../../bus/codec.js';
import type { HyperstartAgentConfig, KataAgentConfig, NoopAgentConfig } from '../../bus/messages.gen.js';
import type { AgentType } from '../../machines/specs.js';

export const agentTypes: readonly AgentType[] = ['noop', 'hyperstart', 'kata'];

export function parseAgentType(value: unknown): AgentType {
  if (typeof value === 'string' && (agentTypes as readonly string[]).includes(value)) return value as AgentType;
  throw invalidArgument(`unknown agent type ${JSON.stringify(value)}: accepted values are ${agentTypes.join(', ')}`);
}

export interface AgentConfigs {
  noop: NoopAgentConfig;
  hyperstart: Required<HyperstartAgentConfig>;
  kata: Required<KataAgentConfig>;
}

const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/** Longest socket name: with the run directory it must still fit a unix socket path (108 bytes). */
const MAX_SOCKET_NAME = 32;
const SOCKET_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/**
 * A socket is named, never placed: the name is a file inside the sandbox's run directory,
 * so nothing on the bus can make the runtime or its guest bind, connect to or remove a
 * file anywhere else. "" keeps the agent's default.
 */
export function socketName(field: string, value: string): string {
  if (value === '') return value;
  if (value.includes('/') || value.includes('..') || !SOCKET_NAME.test(value) || value.length > MAX_SOCKET_NAME) {
    throw invalidArgument(
      `agentConfig.${field} ${JSON.stringify(value)} is not a socket name: give a file name (up to ${MAX_SOCKET_NAME} of A-Z a-z 0-9 . _ -, no "/" or "..") inside the sandbox's run directory, not a path`,
    );
  }
  return value;
}

/** Decodes the untyped agent config of a sandbox spec into its agent type's config. */
export function decodeAgentConfig<T extends AgentType>(type: T, raw: unknown): AgentConfigs[T] {
  const value = raw ?? {};
  let decoded: AgentConfigs[AgentType];
  try {
    decoded = decodeAs(type, value);
  } catch (err) {
    throw invalidArgument(`${type} agent config does not decode: ${(err as Error).message}`);
  }
  if ('grpcSocket' in decoded) socketName('grpcSocket', decoded.grpcSocket);
  if ('sockCtlName' in decoded) {
    socketName('sockCtlName', decoded.sockCtlName);
    socketName('sockTtyName', decoded.sockTtyName);
  }
  return decoded as AgentConfigs[T];
}

function decodeAs(type: AgentType, value: unknown): AgentConfigs[AgentType] {
  switch (type) {
    case 'noop':
      return validate<NoopAgentConfig>('NoopAgentConfig', value, 'agentConfig');
    case 'hyperstart': {
      const c = validate<HyperstartAgentConfig>('HyperstartAgentConfig', value, 'agentConfig');
      return {
        sockCtlName: c.sockCtlName ?? '',
        sockTtyName: c.sockTtyName ?? '',
        readyTimeoutMs: c.readyTimeoutMs || 5_000,
        callTimeoutMs: c.callTimeoutMs || DEFAULT_CALL_TIMEOUT_MS,
        shareTag: c.shareTag || 'hyperShared',
      };
    }
    case 'kata': {
      const c = validate<KataAgentConfig>('KataAgentConfig', value, 'agentConfig');
      return {
        grpcSocket: c.grpcSocket ?? '',
        longLiveConn: c.longLiveConn ?? false,
        dialTimeoutMs: c.dialTimeoutMs || 5_000,
        callTimeoutMs: c.callTimeoutMs || DEFAULT_CALL_TIMEOUT_MS,
      };
    }
  }
  throw new Error(`unknown agent type ${JSON.stringify(type)}`);
}
