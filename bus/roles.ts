// Who may do what on the bus: the three roles, the subject permissions the server
// enforces for each, and what the hosts' account offers the clients' account. Built
// from the subject builders and the command list below, so a new command or subject
// cannot be forgotten here without a type error or a failing test.
import { commandTable, endpointName, routeOf, type CommandDef } from './commands.js';
import {
  ANY, CLIENT_JS_API, commandFilter, JS_API, kvStream, natsSubjects as nats, streams, subjects, SubjectMatcher,
} from './subjects.js';

export const ROLES = ['host', 'operator', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export const isRole = (value: unknown): value is Role => typeof value === 'string' && (ROLES as readonly string[]).includes(value);

export interface CommandInfo {
  /** As the CLI spells it: `sandbox delete`, `container exec`, `creds create`. */
  name: string;
  /** From the command table: viewers may send only the commands that do not. */
  changesState: boolean;
  /** Subject template ({host}, {sid}, {cid} for one token each). */
  subject: string;
}

/** `SandboxOnlineCpuMem` → `sandbox online-cpu-mem`; the host-scoped create as the CLI flag says it. */
const label = (def: CommandDef) => (def.name === 'HostSandboxCreate' ? 'sandbox create --host' : endpointName(def).replace('-', ' '));

/** Every request a client can send to the runtime: the command table, and `creds create`. */
export const commands: readonly CommandInfo[] = [
  ...commandTable.map((def) => ({ name: label(def), changesState: def.changesState, subject: def.subject })),
  { name: 'creds create', changesState: true, subject: subjects.credsCreate() },
];

const matcher = new SubjectMatcher(commands);

/** The command a subject names and its ids, for error messages; undefined when it names none. */
export function commandOf(subject: string): { name: string; target: string } | undefined {
  try {
    const m = matcher.match(subject);
    return m && { name: m.entry.name, target: Object.values(m.params).join(' ') };
  } catch {
    return undefined;
  }
}

/** The streams a client may read (events, and the streams behind the KV buckets). */
const readableStreams = () => [streams.events, kvStream(streams.sandboxBucket), kvStream(streams.hostBucket)];

/** JetStream API calls that only read: stream info and message gets. Nothing creates a consumer. */
export const readOnlyJetStreamApis = (api: string) =>
  readableStreams().flatMap((s) => [nats.jsStreamInfo(api, s), nats.jsStreamMsgGet(api, s), nats.jsDirectGet(api, s), nats.jsDirectGetLast(api, s)]);

/**
 * What a client may address commands to: everything under the public command root
 * (an unknown per-sandbox subject still reaches a host, which refuses it), the same
 * addressed to one host (a second try past a host that did not answer), each
 * host-scoped command of the table (not the hosts' forwarding subjects), `creds create`.
 */
const publicCommands = () => [
  subjects.publicCommands(),
  subjects.hostVia(ANY, subjects.publicCommands()),
  ...commandTable.filter((def) => routeOf(def) === 'host').map((def) => commandFilter(def.subject)),
  subjects.credsCreate(),
];

export interface SubjectPermissions {
  pub: { allow: string[] };
  sub: { allow: string[] };
}

const pattern = (c: CommandInfo) => commandFilter(c.subject);

/** The commands that change nothing, addressed to one host (`via`): a viewer's second tries. */
const readOnlyVia = () =>
  commandTable.filter((def) => !def.changesState && routeOf(def) !== 'host').map((def) => subjects.hostVia(ANY, commandFilter(def.subject)));

/**
 * The subjects each role may publish and subscribe to. Clients get no consumer-creating
 * JetStream API at all: a push consumer, or a pull with a chosen reply subject, would
 * have the server deliver stored messages to a subject the client picks (nats-server
 * checks no permission there), so clients read the stream by message get instead.
 */
export function permissionsFor(role: Role): SubjectPermissions {
  const reads = { allow: [nats.inboxes(), subjects.eventsAll(), subjects.inspectAll()] };
  switch (role) {
    case 'host':
      return {
        pub: {
          allow: [
            subjects.eventsAll(), subjects.inspectAll(), subjects.hostCommands(ANY), nats.jsApiAll(JS_API),
            nats.kvAll(streams.sandboxBucket), nats.kvAll(streams.hostBucket), nats.jsFlowControl(), nats.inboxes(), nats.serviceReplies(),
          ],
        },
        sub: { allow: [subjects.publicCommands(), subjects.hostCommands(ANY), subjects.credsCreate(), nats.serviceDiscovery(), nats.inboxes()] },
      };
    case 'operator':
      return {
        pub: { allow: [...publicCommands(), nats.serviceDiscovery(), ...readOnlyJetStreamApis(CLIENT_JS_API)] },
        sub: reads,
      };
    case 'viewer':
      return {
        pub: { allow: [...commands.filter((c) => !c.changesState).map(pattern), ...readOnlyVia(), nats.serviceDiscovery(), ...readOnlyJetStreamApis(CLIENT_JS_API)] },
        sub: reads,
      };
  }
}

export interface ServiceExport {
  subject: string;
  /** Where the clients' account imports it, when not under the same subject. */
  localSubject?: string;
  type: 'service' | 'stream';
  /** Service discovery gets an answer from every host; everything else one answer. */
  responseType?: 'Singleton' | 'Stream';
}

/**
 * What the hosts' account exports to the clients' account: the commands, discovery,
 * the read-only JetStream calls, and the events and inspection streams. A reply to a
 * client always lands in the clients' account, whatever reply subject the client
 * chose, so no client can make a host or the JetStream API write into the stream or
 * the buckets.
 */
export function hostAccountExports(): ServiceExport[] {
  return [
    ...publicCommands().map((subject) => ({ subject, type: 'service' as const, responseType: 'Singleton' as const })),
    { subject: nats.serviceDiscovery(), type: 'service', responseType: 'Stream' },
    ...readOnlyJetStreamApis(JS_API).map((subject, i) => ({
      subject, localSubject: readOnlyJetStreamApis(CLIENT_JS_API)[i], type: 'service' as const, responseType: 'Singleton' as const,
    })),
    { subject: subjects.eventsAll(), type: 'stream' },
    { subject: subjects.inspectAll(), type: 'stream' },
  ];
}
