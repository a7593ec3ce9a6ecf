// The statecharts of machines/, as exports for other tools: the JSON that Stately's
// visualiser reads (`machine.toJSON()`), Mermaid stateDiagram-v2 and Graphviz DOT, all
// drawn from one model (model.ts). Pure: no I/O.
import { sandboxMachine } from '../machines/sandbox.js';
import { containerMachine } from '../machines/container.js';
import { processMachine } from '../machines/process.js';
import { agentMachine } from '../machines/agent.js';
import { monitorMachine } from '../machines/monitor.js';
import { chartModel, type ChartModel, type StateNodeJson } from './model.js';
import { toMermaid } from './mermaid.js';
import { toDot } from './dot.js';

export const machines = {
  sandbox: sandboxMachine,
  container: containerMachine,
  process: processMachine,
  agent: agentMachine,
  monitor: monitorMachine,
} as const;
export type MachineName = keyof typeof machines;
export const machineNames = Object.keys(machines) as MachineName[];

export const chartFormats = ['json', 'mermaid', 'dot'] as const;
export type ChartFormat = (typeof chartFormats)[number];

/** Each machine's `toJSON()` as plain JSON (state nodes become `#id` targets). */
export function machineJson(names: readonly MachineName[] = machineNames): Record<string, StateNodeJson> {
  return Object.fromEntries(names.map((n) => [n, JSON.parse(JSON.stringify(machines[n].toJSON())) as StateNodeJson]));
}

export function machineCharts(names: readonly MachineName[] = machineNames): ChartModel[] {
  return Object.entries(machineJson(names)).map(([name, json]) => chartModel(name, json));
}

/** The text `virtactors statecharts --format F` prints. */
export function exportCharts(format: ChartFormat, names: readonly MachineName[] = machineNames): string {
  switch (format) {
    case 'json':
      return JSON.stringify(machineJson(names), null, 2);
    case 'mermaid':
      return toMermaid(machineCharts(names));
    case 'dot':
      return toDot(machineCharts(names));
  }
}

export { chartModel, chartStates, transitionLabel, type ChartModel, type ChartState, type ChartTransition } from './model.js';
