// Bundles the entry points into dist/. The host side keeps node_modules external; guest
// agents are bundled whole so that they start fast inside a sandbox.
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';

const requireShim = "import { createRequire as __vaCreateRequire } from 'node:module'; const require = __vaCreateRequire(import.meta.url);";
const common = { bundle: true, platform: 'node', target: 'node20', format: 'esm', sourcemap: true, logLevel: 'warning' };

const host = ['bin/virtactors.ts', 'runtime/main.ts', 'bench/run.ts'].filter(existsSync);
const guests = ['guest/kata-agent/main.ts', 'guest/hyperstart/main.ts'].filter(existsSync);

await build({ ...common, entryPoints: host, outdir: 'dist', outbase: '.', packages: 'external' });
if (guests.length) {
  await build({ ...common, entryPoints: guests, outdir: 'dist', outbase: '.', banner: { js: requireShim }, loader: { '.proto': 'text' } });
}

// The live page (ui/): one script for the browser, its worker for the ELK layout, the
// HTML and CSS. Everything is served from dist/ui by `virtactors ui`; no CDN.
if (existsSync('ui/page/app.ts')) {
  await build({ bundle: true, platform: 'browser', target: 'es2022', format: 'iife', minify: true, sourcemap: true, logLevel: 'warning', entryPoints: ['ui/page/app.ts'], outfile: 'dist/ui/app.js' });
  mkdirSync('dist/ui', { recursive: true });
  copyFileSync('ui/page/index.html', 'dist/ui/index.html');
  copyFileSync('ui/page/app.css', 'dist/ui/app.css');
  copyFileSync(createRequire(import.meta.url).resolve('elkjs/lib/elk-worker.min.js'), 'dist/ui/elk-worker.js');
}
