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

export const subjects = {
  // commands (see commandSubject for one command's subject)
  /** Every command for any host or for a sandbox: each host's one queue subscription. */
  publicCommands: () => `${ROOT}.sandbox.>`,
  /** Commands addressed to one host, forwarded ones included: its one direct subscription. */
  hostCommands: (host: string) => `${ROOT}.host.${host}.>`,
  /** A command forwarded to the host that owns the sandbox: the same tail, host-scoped. */
  hostForward: (host: string, commandSubject: string) => `${ROOT}.host.${host}.${FORWARD}.${commandSubject.slice(ROOT.length + 1)}`,
  /**
   * A public command addressed to one host, served as if the queue group had handed it
   * there: a client's second try past a queue member that did not answer.
   */
  hostVia: (host: string, commandSubject: string) => `${ROOT}.host.${host}.${VIA}.${commandSubject.slice(ROOT.length + 1)}`,

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
  /** Creating a consumer: what no client may call (see bus/roles.ts). */
  jsConsumerCreate: (api: string, stream: string) => `${api}.CONSUMER.CREATE.${stream}`,
  /**
   * Where a push consumer's reader answers the server's flow-control requests: without
   * it the server stops delivering once a window of data is unanswered (a KV watch over
   * the sandbox records stalled at ~1.7 MB, some 2,000 records).
   */
  jsFlowControl: () => '$JS.FC.>',
  kvAll: (bucket: string) => `$KV.${bucket}.>`,
  kvKey: (bucket: string, key: string) => `$KV.${bucket}.${key}`,
} as const;

/** JetStream and KV names. */
export const streams = {
  events: 'VC_EVENTS',
  sandboxBucket: 'vc_sandboxes',
  hostBucket: 'vc_hosts',
} as const;

/** The stream behind a KV bucket. */
export const kvStream = (bucket: string) => `KV_${bucket}`;

/** Header of a client's second try of a command (bus/retries.ts): the first may still run. */
export const RETRY_HEADER = 'Vc-Retry';

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

const FORWARD = 'fwd';
const VIA = 'via';

/** A command's subject parameters, by name ({host}, {sid}, {cid}). */
export type SubjectParams = Readonly<Record<string, string>>;

const PARAM_KIND: Record<string, string> = { host: 'host', sid: 'sandbox', cid: 'container' };

/** The subject of one command: its template from the command table, filled in. */
export function commandSubject(template: string, params: SubjectParams): string {
  return template.replace(/\{(\w+)\}/g, (_, name: string) => checkId(PARAM_KIND[name] ?? name, params[name]));
}

/** A command template as a subscription filter: every parameter is a wildcard token. */
export function commandFilter(template: string): string {
  return template.replace(/\{\w+\}/g, '*');
}

/**
 * The command part of a received subject: a forwarded command (from another host) or a
 * public one addressed to this host (`via`), without the host prefix.
 */
export function commandTail(subject: string): { subject: string; forwarded: boolean } {
  const t = subject.split('.', 5);
  if (t[2] === 'host' && (t[4] === FORWARD || t[4] === VIA)) {
    const prefix = `${ROOT}.host.${t[3]}.${t[4]}.`;
    return { subject: `${ROOT}.${subject.slice(prefix.length)}`, forwarded: t[4] === FORWARD };
  }
  return { subject, forwarded: false };
}

/**
 * Matches received subjects against command templates: token count and literal tokens;
 * the parameter tokens come back by name (checked ids), or InvalidArgument.
 */
export class SubjectMatcher<T extends { subject: string }> {
  private readonly byLength = new Map<number, Array<{ entry: T; tokens: string[] }>>();

  constructor(entries: readonly T[]) {
    for (const entry of entries) {
      const tokens = entry.subject.split('.');
      const list = this.byLength.get(tokens.length) ?? [];
      list.push({ entry, tokens });
      this.byLength.set(tokens.length, list);
    }
  }

  match(subject: string): { entry: T; params: Record<string, string> } | undefined {
    const tokens = subject.split('.');
    for (const { entry, tokens: template } of this.byLength.get(tokens.length) ?? []) {
      if (!template.every((want, i) => want.charCodeAt(0) === 123 /* { */ || want === tokens[i])) continue;
      const params: Record<string, string> = {};
      template.forEach((want, i) => {
        if (want.charCodeAt(0) !== 123) return;
        const name = want.slice(1, -1);
        params[name] = checkId(PARAM_KIND[name] ?? name, tokens[i]);
      });
      return { entry, params };
    }
    return undefined;
  }
}
