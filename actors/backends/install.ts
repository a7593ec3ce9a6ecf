// Registers the guest backends this host can run: always the process backend; the
// namespace backend as root when unshare and its helpers are installed.
import { createLogger } from '../../runtime/log.js';
import { registerBackend } from './index.js';
import { NamespaceBackend, namespaceTools } from './namespace.js';
import { ProcessBackend } from './process.js';

const log = createLogger('backend');

registerBackend('process', () => new ProcessBackend({ log }));

const tools = namespaceTools();
if (process.getuid?.() === 0 && tools) {
  registerBackend('namespace', () => new NamespaceBackend({ log, tools }));
}
