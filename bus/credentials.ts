// Credentials in NATS's decentralised (JWT) form, built with the maintained @nats-io
// packages: an operator signs three accounts (the system account, the hosts' account,
// which holds the stream and the buckets, and the clients' account), and an account
// signs each user's JWT, which carries the user's role and subject permissions.
//
// JWTs rather than nkey users listed in the server's config: minting a user is only a
// signature, so `virtactors creds create` needs no server reload, and the same account
// JWTs serve one server or a cluster. Users' files are standard `.creds` files
// (`nats --creds`, nats.js's credsAuthenticator).
import { createAccount, createOperator, createUser, decode, encodeAccount, encodeOperator, encodeUser, fmtCreds } from '@nats-io/jwt';
import type { Account, Export, Import, OperatorLimits, User } from '@nats-io/jwt';
import { hostAccountExports, isRole, permissionsFor, type Role } from './roles.js';

/** A seed (secret) and the JWT that the key above it signed. */
export interface SignedKey {
  seed: string;
  jwt: string;
}

/** Everything needed to run servers and mint users. The seeds are secrets. */
export interface Authority {
  operator: SignedKey;
  system: SignedKey;
  hosts: SignedKey;
  clients: SignedKey;
}

export const AUTHORITY_KEYS = ['operator', 'system', 'hosts', 'clients'] as const;

/** Which account a role's users belong to. */
export const roleAccount = (role: Role): 'hosts' | 'clients' => (role === 'host' ? 'hosts' : 'clients');

const ROLE_TAG = 'virtactors-role:';
const td = new TextDecoder();
const seedOf = (kp: { getSeed(): Uint8Array }) => td.decode(kp.getSeed());

/** Unlimited connections, subscriptions and payloads; imports and exports allowed. */
const OPEN_LIMITS: OperatorLimits = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };
const JETSTREAM_LIMITS: OperatorLimits = { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };
/** How long a client's request may wait for a host's reply across accounts (a long `wait`). */
const REPLY_THRESHOLD_NS = 3600 * 1e9;

export async function createAuthority(): Promise<Authority> {
  const op = createOperator();
  const sys = createAccount();
  const hosts = createAccount();
  const clients = createAccount();
  const exported = hostAccountExports();
  const exports: Export[] = exported.map((e, i) => ({
    name: `vc-${i}`,
    subject: e.subject,
    type: e.type,
    ...(e.responseType ? { response_type: e.responseType, response_threshold: REPLY_THRESHOLD_NS } : {}),
  }));
  const imports: Import[] = exported.map((e, i) => ({
    name: `vc-${i}`, subject: e.subject, type: e.type, account: hosts.getPublicKey(), ...(e.localSubject ? { local_subject: e.localSubject } : {}),
  }));
  const account = async (name: string, kp: typeof sys, body: Partial<Account>): Promise<SignedKey> => ({
    seed: seedOf(kp),
    jwt: await encodeAccount(name, kp, body, { signer: op }),
  });
  return {
    operator: { seed: seedOf(op), jwt: await encodeOperator('virtactors', op, { system_account: sys.getPublicKey() }) },
    system: await account('SYS', sys, { limits: OPEN_LIMITS }),
    hosts: await account('VC_HOSTS', hosts, { limits: { ...OPEN_LIMITS, ...JETSTREAM_LIMITS }, exports }),
    // No JetStream of its own: a client's JetStream calls can only reach the imports.
    clients: await account('VC_CLIENTS', clients, { limits: OPEN_LIMITS, imports }),
  };
}

const publicKeyOf = (signed: SignedKey) => decode(signed.jwt).sub;

/** Signs a user JWT for a public key the user generated (its seed never leaves the user). */
export async function signUser(authority: Authority, role: Role, name: string, userPublicKey: string): Promise<string> {
  const perms = permissionsFor(role);
  const user: Partial<User> = { pub: perms.pub, sub: perms.sub, tags: [`${ROLE_TAG}${role}`] };
  return encodeUser(name, userPublicKey, authority[roleAccount(role)].seed, user);
}

/** A new user key pair, and its `.creds` file text once `sign` returned the JWT. */
export async function mintCreds(sign: (publicKey: string) => Promise<string>): Promise<string> {
  const user = createUser();
  const jwt = await sign(user.getPublicKey());
  return td.decode(fmtCreds(jwt, user));
}

/** A `.creds` file for a role, signed locally with the authority's keys. */
export const createCreds = (authority: Authority, role: Role, name: string) => mintCreds((pk) => signUser(authority, role, name, pk));

export interface CredsIdentity {
  name: string;
  /** Undefined for credentials that virtactors did not mint. */
  role?: Role;
  publicKey: string;
}

/** Who a `.creds` file (or a user JWT) speaks for, read from its JWT; nothing is verified here. */
export function credsIdentity(creds: string): CredsIdentity {
  const m = /-----BEGIN NATS USER JWT-----\s*(\S+)\s*------END NATS USER JWT------/.exec(creds);
  const claims = decode<User>(m ? m[1]! : creds.trim());
  const tag = (claims.nats.tags ?? []).find((t) => t.startsWith(ROLE_TAG))?.slice(ROLE_TAG.length);
  return { name: claims.name, role: isRole(tag) ? tag : undefined, publicKey: claims.sub };
}

/** Whether a public key is a NATS user key (what `creds create` signs). */
export const isUserPublicKey = (key: string) => /^U[A-Z2-7]{55}$/.test(key);

/**
 * The nats-server configuration that trusts the authority: operator mode with the
 * accounts preloaded (no account server needed). No secret in it.
 */
export function serverAuthConfig(a: Authority): string {
  const sys = publicKeyOf(a.system);
  return [
    '# Written by virtactors: operator mode, accounts preloaded. Contains no secret.',
    `operator: ${a.operator.jwt}`,
    `system_account: ${sys}`,
    'resolver: MEMORY',
    'resolver_preload: {',
    ...(['system', 'hosts', 'clients'] as const).map((k) => `  ${publicKeyOf(a[k])}: ${a[k].jwt}`),
    '}',
    '',
  ].join('\n');
}

export interface RouteAuth {
  user: string;
  password: string;
}

/**
 * The body of a `cluster {}` block's authentication: the user a route must present,
 * and the routes to dial with it (nats-server takes a route's credentials from its URL).
 */
export function clusterAuthConfig(auth: RouteAuth, routes: string[]): string {
  const url = (r: string) => {
    const u = new URL(r.includes('://') ? r : `nats-route://${r}`);
    u.username = encodeURIComponent(auth.user);
    u.password = encodeURIComponent(auth.password);
    return u.toString().replace(/\/$/, '');
  };
  return [
    '# Written by virtactors: route authentication. Secret: keep it 0600.',
    `authorization { user: ${JSON.stringify(auth.user)}, password: ${JSON.stringify(auth.password)} }`,
    `routes: [${routes.map((r) => JSON.stringify(url(r))).join(', ')}]`,
    '',
  ].join('\n');
}
