// Bundles the entry points into dist/. The host side keeps node_modules external; guest
// agents are bundled whole so that they start fast inside a sandbox.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';

const requireShim = "import { createRequire as __vaCreateRequire } from 'node:module'; const require = __vaCreateRequire(import.meta.url);";
const common = { bundle: true, platform: 'node', target: 'node20', format: 'esm', sourcemap: true, logLevel: 'warning' };

const host = ['bin/virtactors.ts', 'runtime/main.ts', 'bench/run.ts'].filter(existsSync);
const guests = ['guest/kata-agent/main.ts', 'guest/hyperstart/main.ts'].filter(existsSync);

await build({ ...common, entryPoints: host, outdir: 'dist', outbase: '.', packages: 'external' });
if (guests.length) {
  await build({ ...common, entryPoints: guests, outdir: 'dist', outbase: '.', banner: { js: requireShim }, loader: { '.proto': 'text' } });
}
