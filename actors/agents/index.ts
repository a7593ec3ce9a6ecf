// Builds the agent driver for a sandbox's agent type.
import type { AgentType } from '../../machines/specs.js';
import type { Agent } from './agent.js';
import { NoopAgent } from './noop.js';

type AgentConstructor = () => Agent;

const drivers: Partial<Record<AgentType, AgentConstructor>> = {
  noop: () => new NoopAgent(),
};

/** Registers the driver of an agent type (each protocol module calls this). */
export function registerAgent(type: AgentType, make: AgentConstructor): void {
  drivers[type] = make;
}

export function hasAgent(type: AgentType): boolean {
  return drivers[type] !== undefined;
}

export function createAgent(type: AgentType): Agent {
  const make = drivers[type];
  if (!make) throw new Error(`agent type ${type} has no driver on this host`);
  return make();
}
