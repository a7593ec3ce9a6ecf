// Which sandbox states allow each container command (reference §3.4, "Sandbox must be").
// The container's own state is checked by its statechart; this is the parent's half.
import type { ContainerCommand } from './container.js';

const SANDBOX_STATES_FOR: Readonly<Record<ContainerCommand, readonly string[]>> = {
  START: ['running'],
  STOP: ['ready', 'running'],
  PAUSE: ['running'],
  RESUME: ['running'],
  DELETE: ['ready', 'running', 'stopped', 'paused'],
  KILL: ['ready', 'running', 'paused'],
  EXEC: ['running'],
  PS: ['running'],
  WAIT: ['ready', 'running', 'paused', 'stopped', 'failed'],
  STATS: ['running'],
  // As a process's stdin: the guest must run (a paused container's terminal resizes too).
  RESIZE: ['running'],
  // Output kept on the host: readable whatever the sandbox's state.
  LOGS: ['creating', 'ready', 'booting', 'starting', 'running', 'pausing', 'paused', 'resuming', 'stopping', 'stopped', 'failed', 'deleting'],
};

export const sandboxStatesFor = (command: ContainerCommand): readonly string[] => SANDBOX_STATES_FOR[command];
