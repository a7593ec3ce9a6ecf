// Where credentials live on disk: an auth directory (0700) holding the authority's
// seeds and JWTs, the nats-server include that trusts them, and users' `.creds` files,
// every secret 0600. The same layout serves the private server of `npm start`
// (`.state/auth`), the tests and a deployment (`virtactors creds init DIR`).
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  AUTHORITY_KEYS, clusterAuthConfig, createAuthority, createCreds, serverAuthConfig, type Authority, type RouteAuth,
} from './credentials.js';
import type { Role } from './roles.js';

export const authFiles = (dir: string) => ({
  dir,
  /** nkey seed files, as `nk -inkey` reads them. */
  seed: (key: (typeof AUTHORITY_KEYS)[number]) => join(dir, `${key}.nk`),
  jwt: (key: (typeof AUTHORITY_KEYS)[number]) => join(dir, `${key}.jwt`),
  /** Include for nats-server: operator mode and the preloaded accounts. */
  serverConfig: join(dir, 'nats-auth.conf'),
  /** Include for a `cluster {}` block: route user and routes with their password. */
  clusterConfig: join(dir, 'cluster-auth.conf'),
  creds: (name: string) => join(dir, 'creds', `${name}.creds`),
});

/** The credentials every auth directory starts with: one host, one operator. */
export const INITIAL_USERS: ReadonlyArray<{ name: string; role: Role }> = [
  { name: 'host', role: 'host' },
  { name: 'operator', role: 'operator' },
];

/** Creates a directory readable by its owner only (and tightens one that exists). */
export function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/**
 * Writes a file only its owner can read: created 0600 under a temporary name in the
 * same directory, then renamed over the target, so no reader ever sees it wider or half
 * written. `exclusive` refuses to replace an existing file.
 */
export function writePrivateFile(path: string, text: string, exclusive = false): void {
  privateDir(dirname(path));
  if (exclusive && existsSync(path)) throw new Error(`${path} exists; not overwriting it`);
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    // Whole (writeSync may stop short on a full disk) and on disk before the rename.
    writeFileSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/** The authority stored in `dir`, or undefined when there is none. */
export function loadAuthority(dir: string): Authority | undefined {
  const f = authFiles(dir);
  const present = AUTHORITY_KEYS.filter((k) => existsSync(f.seed(k)) && existsSync(f.jwt(k)));
  if (present.length === 0) return undefined;
  if (present.length < AUTHORITY_KEYS.length) {
    throw new Error(`${dir} holds only part of a virtactors authority (${present.join(', ')}); restore it or remove the directory`);
  }
  const read = (p: string) => readFileSync(p, 'utf8').trim();
  return Object.fromEntries(AUTHORITY_KEYS.map((k) => [k, { seed: read(f.seed(k)), jwt: read(f.jwt(k)) }])) as unknown as Authority;
}

/**
 * Loads the authority in `dir`, or creates it with the server include and the initial
 * host and operator credentials. Never overwrites what exists.
 */
export async function ensureAuthority(dir: string): Promise<{ authority: Authority; created: boolean }> {
  privateDir(dir);
  const existing = loadAuthority(dir);
  const f = authFiles(dir);
  const authority = existing ?? (await createAuthority());
  if (!existing) {
    for (const k of AUTHORITY_KEYS) {
      writePrivateFile(f.seed(k), `${authority[k].seed}\n`, true);
      writePrivateFile(f.jwt(k), `${authority[k].jwt}\n`, true);
    }
  }
  if (!existsSync(f.serverConfig)) writePrivateFile(f.serverConfig, serverAuthConfig(authority));
  for (const u of INITIAL_USERS) {
    if (!existsSync(f.creds(u.name))) writePrivateFile(f.creds(u.name), await createCreds(authority, u.role, u.name));
  }
  return { authority, created: !existing };
}

/** A fresh route password: 32 random bytes, URL-safe. */
export const newRoutePassword = () => randomBytes(32).toString('base64url');

/** Writes the cluster include (route user, password, routes) into the auth directory. */
export function writeClusterAuth(dir: string, routes: string[], auth: RouteAuth = { user: 'route', password: newRoutePassword() }): RouteAuth {
  writePrivateFile(authFiles(dir).clusterConfig, clusterAuthConfig(auth, routes));
  return auth;
}
