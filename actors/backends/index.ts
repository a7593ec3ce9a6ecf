// Builds the backend for a sandbox's backend type.
import type { Logger } from 'pino';
import type { BackendType } from '../../machines/specs.js';
import { NoneBackend, type Backend } from './backend.js';

/** Host settings a backend may need. */
export interface BackendSettings {
  /** Directories external agent endpoints may lie under (VC_ATTACH_DIRS). */
  attachDirs: readonly string[];
  /** Memory the host keeps for itself: no guest starts that would leave less (VC_MEMORY_RESERVE_MIB). */
  memoryReserveMiB?: number;
  /** The pids limit of a sandbox that asks for none (VC_SANDBOX_PIDS_MAX; 0: none). */
  sandboxPidsMax?: number;
}

/** Builds a backend; it logs through the host's logger. */
type BackendConstructor = (log: Logger, settings: BackendSettings) => Backend;

const backends: Partial<Record<BackendType, BackendConstructor>> = {
  none: () => new NoneBackend(),
};

export function registerBackend(type: BackendType, make: BackendConstructor): void {
  backends[type] = make;
}

export function createBackend(type: BackendType, log: Logger, settings: BackendSettings = { attachDirs: [] }): Backend {
  const make = backends[type];
  if (!make) throw new Error(`backend ${type} is not available on this host`);
  return make(log, settings);
}

/** The backend for guests when a spec names none: namespaces as root, else a plain process. */
export function defaultGuestBackend(): BackendType {
  return process.getuid?.() === 0 && backends.namespace ? 'namespace' : 'process';
}
