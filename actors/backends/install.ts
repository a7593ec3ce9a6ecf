// Registers the guest backends this host can run: always the process backend; the
// namespace backend as root when unshare and its helpers are installed.
import { registerBackend } from './index.js';
import { NamespaceBackend, namespaceTools } from './namespace.js';
import { ProcessBackend } from './process.js';
import { usernsSetting } from './userns.js';

registerBackend('process', (log) => new ProcessBackend({ log }));

const tools = namespaceTools();
if (process.getuid?.() === 0 && tools) {
  const userns = usernsSetting();
  registerBackend('namespace', (log) => new NamespaceBackend({ log, tools, userns }));
}
