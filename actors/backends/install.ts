// Registers the guest backends this host can run: always the process backend and the
// external one (off until the host allows endpoint directories); the namespace backend
// as root when unshare and its helpers are installed.
import { registerBackend } from './index.js';
import { NamespaceBackend, namespaceTools } from './namespace.js';
import { ProcessBackend } from './process.js';
import { ExternalBackend } from './external.js';
import { usernsSetting } from './userns.js';

registerBackend('process', (log, { memoryReserveMiB }) => new ProcessBackend({ log, memoryReserveMiB }));
registerBackend('external', (log, { attachDirs }) => new ExternalBackend({ log, attachDirs }));

const tools = namespaceTools();
if (process.getuid?.() === 0 && tools) {
  const userns = usernsSetting();
  registerBackend('namespace', (log, { memoryReserveMiB, sandboxPidsMax }) => new NamespaceBackend({ log, tools, userns, memoryReserveMiB, sandboxPidsMax }));
}
