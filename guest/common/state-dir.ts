// The guest's own state directory: bundles, the OCI runtime's state, the default root
// filesystem. Always a fresh directory the guest makes itself (0700), inside the parent it
// is given (the sandbox's run directory) or the system's temporary directory, and removed
// by the guest when it ends: it never removes anything it did not make.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface GuestStateDir {
  readonly path: string;
  remove(): void;
}

export function guestStateDir(parent: string | undefined): GuestStateDir {
  const path = mkdtempSync(join(parent ?? tmpdir(), 'guest-'));
  return {
    path,
    remove: () => rmSync(path, { recursive: true, force: true }),
  };
}
