// The only place NATS subjects are written. Everything else, tests included, builds
// subjects with these functions.
import { invalidArgument } from './errors.js';

const ROOT = 'vc.v1';

/** Sandbox, container and exec ids: a subject token, readable, bounded. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
export const HOST_PATTERN = ID_PATTERN;

export function checkId(kind: string, id: unknown): string {
  if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
    throw invalidArgument(
      `${kind} id ${JSON.stringify(id)} is invalid: use 1 to 63 characters of A-Z a-z 0-9 _ -, starting with a letter or digit`,
    );
  }
  return id;
}

export const sandboxOps = ['start', 'stop', 'pause', 'resume', 'delete', 'status', 'online-cpu-mem'] as const;
export type SandboxOp = (typeof sandboxOps)[number];
export const containerOps = [
  'start', 'stop', 'kill', 'delete', 'status', 'exec', 'ps', 'wait', 'pause', 'resume', 'logs', 'stats',
] as const;
export type ContainerOp = (typeof containerOps)[number];

export const subjects = {
  // commands
  sandboxCreate: () => `${ROOT}.sandbox.create`,
  hostSandboxCreate: (host: string) => `${ROOT}.host.${host}.sandbox.create`,
  sandboxList: () => `${ROOT}.sandbox.list`,
  sandboxOp: (sid: string, op: SandboxOp) => `${ROOT}.sandbox.${sid}.${op}`,
  containerCreate: (sid: string) => `${ROOT}.sandbox.${sid}.container.create`,
  containerOp: (sid: string, cid: string, op: ContainerOp) => `${ROOT}.sandbox.${sid}.container.${cid}.${op}`,
  /** Every per-sandbox command, for the router's one wildcard per host. */
  allSandboxCommands: () => `${ROOT}.sandbox.*.>`,
  /** A command forwarded to the host that owns the sandbox: the same tail, host-scoped. */
  hostForward: (host: string, commandSubject: string) => `${ROOT}.host.${host}.fwd.${commandSubject.slice(ROOT.length + 1)}`,
  hostForwardAll: (host: string) => `${ROOT}.host.${host}.fwd.>`,

  // events
  eventsAll: () => `${ROOT}.evt.>`,
  sandboxEvent: (sid: string, type: string) => `${ROOT}.evt.sandbox.${sid}.${type}`,
  containerEvent: (sid: string, cid: string, type: string) => `${ROOT}.evt.sandbox.${sid}.container.${cid}.${type}`,
  /** Every event of one sandbox, its containers included. */
  sandboxEvents: (sid: string) => `${ROOT}.evt.sandbox.${sid}.>`,
  hostEvent: (host: string, type: string) => `${ROOT}.evt.host.${host}.${type}`,

  // inspection
  inspectSandbox: (sid: string) => `${ROOT}.inspect.sandbox.${sid}`,
  inspectAll: () => `${ROOT}.inspect.>`,

  // credentials: minting a user JWT (served by a host that holds the signing keys)
  credsCreate: () => `${ROOT}.creds.create`,

  /** Every command and the host-scoped subjects under the root (for permissions). */
  allSandbox: () => `${ROOT}.sandbox.>`,
  allHost: () => `${ROOT}.host.>`,
} as const;

/** A subject token that matches any one token, for permission lists. */
export const ANY = '*';

/** Where the JetStream API answers: `$JS.API` in the account that holds the streams. */
export const JS_API = '$JS.API';
/**
 * Where clients reach the hosts' JetStream API: the hosts' account exports a few
 * read-only calls and the clients' account imports them under this prefix (its own
 * `$JS.API` answers "not enabled", the clients' account having no JetStream).
 */
export const CLIENT_JS_API = `${ROOT}.js.API`;

/** NATS-level subjects the permissions and account exports name. */
export const natsSubjects = {
  inboxes: () => '_INBOX.>',
  /** Reply subjects the server maps for requests that cross accounts. */
  serviceReplies: () => '_R_.>',
  serviceDiscovery: () => '$SRV.>',
  jsApiAll: (api = JS_API) => `${api}.>`,
  jsStreamInfo: (api: string, stream: string) => `${api}.STREAM.INFO.${stream}`,
  /** Leader-answered message get: by sequence, or the next one matching a filter. */
  jsStreamMsgGet: (api: string, stream: string) => `${api}.STREAM.MSG.GET.${stream}`,
  jsDirectGet: (api: string, stream: string) => `${api}.DIRECT.GET.${stream}`,
  /** Direct get of the last message on a subject (how KV reads a key). */
  jsDirectGetLast: (api: string, stream: string) => `${api}.DIRECT.GET.${stream}.>`,
  kvAll: (bucket: string) => `$KV.${bucket}.>`,
} as const;

/** JetStream and KV names. */
export const streams = {
  events: 'VC_EVENTS',
  sandboxBucket: 'vc_sandboxes',
  hostBucket: 'vc_hosts',
} as const;

/** The stream behind a KV bucket. */
export const kvStream = (bucket: string) => `KV_${bucket}`;

/** The queue group every host joins for "any host" commands. */
export const QUEUE_GROUP = 'vc-hosts';

/** Service discovery (ADR-32) subjects: $SRV.<verb>, $SRV.<verb>.<name>, $SRV.<verb>.<name>.<id>. */
export const SERVICE_NAME = 'virtactors';
export const srvVerbs = ['PING', 'INFO', 'STATS'] as const;
export type SrvVerb = (typeof srvVerbs)[number];
export const srvSubjects = (verb: SrvVerb, id: string) => [
  `$SRV.${verb}`,
  `$SRV.${verb}.${SERVICE_NAME}`,
  `$SRV.${verb}.${SERVICE_NAME}.${id}`,
];

export type ParsedCommand =
  | { kind: 'sandbox.create' }
  | { kind: 'sandbox.list' }
  | { kind: 'sandbox'; sid: string; op: SandboxOp }
  | { kind: 'container.create'; sid: string }
  | { kind: 'container'; sid: string; cid: string; op: ContainerOp };

/**
 * Parses a command subject (host-scoped or not). Throws InvalidArgument for a subject
 * under the command root that names no known command.
 */
export function parseCommandSubject(subject: string): ParsedCommand {
  let tokens = subject.split('.');
  if (tokens[0] !== 'vc' || tokens[1] !== 'v1') throw invalidArgument(`not a command subject: ${subject}`);
  tokens = tokens.slice(2);
  if (tokens[0] === 'host') tokens = tokens[2] === 'fwd' ? tokens.slice(3) : tokens.slice(2);
  const unknown = () => invalidArgument(`unknown command subject: ${subject}`);
  if (tokens[0] !== 'sandbox') throw unknown();
  if (tokens.length === 2 && tokens[1] === 'create') return { kind: 'sandbox.create' };
  if (tokens.length === 2 && tokens[1] === 'list') return { kind: 'sandbox.list' };
  const sid = tokens[1] ?? '';
  if (tokens.length === 3) {
    const op = tokens[2] as SandboxOp;
    if (!sandboxOps.includes(op)) throw unknown();
    return { kind: 'sandbox', sid: checkId('sandbox', sid), op };
  }
  if (tokens[2] !== 'container') throw unknown();
  if (tokens.length === 4 && tokens[3] === 'create') return { kind: 'container.create', sid: checkId('sandbox', sid) };
  if (tokens.length === 5) {
    const op = tokens[4] as ContainerOp;
    if (!containerOps.includes(op)) throw unknown();
    return { kind: 'container', sid: checkId('sandbox', sid), cid: checkId('container', tokens[3]), op };
  }
  throw unknown();
}
