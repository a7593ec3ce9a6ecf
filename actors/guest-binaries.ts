// Where the built guest agents are: dist/guest/<name>/main.js under the project root.
// Guests are bundled into one file each so that they start fast inside a sandbox.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type GuestName = 'kata-agent' | 'hyperstart';

function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the virtactors project root');
    dir = up;
  }
  return dir;
}

export function guestEntry(name: GuestName): string {
  const path = join(projectRoot(), 'dist', 'guest', name, 'main.js');
  if (!existsSync(path)) throw new Error(`guest agent ${name} is not built (${path} is missing): run \`npm run build\``);
  return path;
}

/** Host setting: the OCI runtime guests run containers through (crun by default; runc; none only to measure). */
export const OCI_RUNTIME_SETTING = 'VC_OCI_RUNTIME';
const OCI_CHOICES = ['auto', 'crun', 'runc', 'none'];

/** The guest's environment: only what it needs (no TLS roots, no host secrets). */
export function guestEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };
  const oci = process.env[OCI_RUNTIME_SETTING];
  if (oci) {
    if (!OCI_CHOICES.includes(oci)) throw new Error(`${OCI_RUNTIME_SETTING}=${oci}: use ${OCI_CHOICES.join(', ')}`);
    // Read by the guest agents (guest/common/oci/runtime.ts, OCI_RUNTIME_ENV).
    env.VIRTACTORS_OCI_RUNTIME = oci;
  }
  return { ...env, ...extra };
}
