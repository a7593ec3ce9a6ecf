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

/** Decodes the untyped agent config of a sandbox spec into its agent type's config. */
export function decodeAgentConfig<T extends AgentType>(type: T, raw: unknown): AgentConfigs[T] {
  const value = raw ?? {};
  try {
    switch (type) {
      case 'noop':
        return validate<NoopAgentConfig>('NoopAgentConfig', value, 'agentConfig') as AgentConfigs[T];
      case 'hyperstart': {
        const c = validate<HyperstartAgentConfig>('HyperstartAgentConfig', value, 'agentConfig');
        return {
          sockCtlName: c.sockCtlName ?? '',
          sockTtyName: c.sockTtyName ?? '',
          readyTimeoutMs: c.readyTimeoutMs || 5_000,
          callTimeoutMs: c.callTimeoutMs || DEFAULT_CALL_TIMEOUT_MS,
          shareTag: c.shareTag || 'hyperShared',
        } as AgentConfigs[T];
      }
      case 'kata': {
        const c = validate<KataAgentConfig>('KataAgentConfig', value, 'agentConfig');
        return {
          grpcSocket: c.grpcSocket ?? '',
          longLiveConn: c.longLiveConn ?? false,
          dialTimeoutMs: c.dialTimeoutMs || 5_000,
          callTimeoutMs: c.callTimeoutMs || DEFAULT_CALL_TIMEOUT_MS,
        } as AgentConfigs[T];
      }
    }
  } catch (err) {
    throw invalidArgument(`${type} agent config does not decode: ${(err as Error).message}`);
  }
  throw invalidArgument(`unknown agent type ${JSON.stringify(type)}`);
}
