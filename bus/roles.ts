// Who may do what on the bus: the three roles, the subject permissions the server
// enforces for each, and what the hosts' account offers the clients' account. Built
// from the subject builders and the command list below, so a new command or subject
// cannot be forgotten here without a type error or a failing test.
import {
  ANY, CLIENT_JS_API, containerOps, JS_API, kvStream, natsSubjects as nats, parseCommandSubject, sandboxOps, streams, subjects,
  type ContainerOp, type SandboxOp,
} from './subjects.js';

export const ROLES = ['host', 'operator', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export const isRole = (value: unknown): value is Role => typeof value === 'string' && (ROLES as readonly string[]).includes(value);

/** Whether each per-sandbox command changes state (viewers may send only the others). */
const sandboxOpChanges: Record<SandboxOp, boolean> = {
  start: true, stop: true, pause: true, resume: true, delete: true, 'online-cpu-mem': true, status: false,
};
const containerOpChanges: Record<ContainerOp, boolean> = {
  start: true, stop: true, kill: true, delete: true, exec: true, pause: true, resume: true,
  status: false, ps: false, wait: false, logs: false, stats: false,
};

export interface CommandInfo {
  /** As the CLI spells it: `sandbox delete`, `container exec`, `creds create`. */
  name: string;
  changesState: boolean;
  /** The subject for concrete ids, or with `ANY` in their place the permission pattern. */
  subject(sid: string, cid: string, host: string): string;
}

/** Every request a client can send to the runtime. */
export const commands: readonly CommandInfo[] = [
  { name: 'sandbox create', changesState: true, subject: () => subjects.sandboxCreate() },
  { name: 'sandbox create --host', changesState: true, subject: (_s, _c, host) => subjects.hostSandboxCreate(host) },
  { name: 'sandbox list', changesState: false, subject: () => subjects.sandboxList() },
  ...sandboxOps.map((op) => ({ name: `sandbox ${op}`, changesState: sandboxOpChanges[op], subject: (sid: string) => subjects.sandboxOp(sid, op) })),
  { name: 'container create', changesState: true, subject: (sid) => subjects.containerCreate(sid) },
  ...containerOps.map((op) => ({
    name: `container ${op}`, changesState: containerOpChanges[op], subject: (sid: string, cid: string) => subjects.containerOp(sid, cid, op),
  })),
  { name: 'creds create', changesState: true, subject: () => subjects.credsCreate() },
];

/** The command a subject names, for error messages; undefined when it names none. */
export function commandOf(subject: string): { name: string; target: string } | undefined {
  if (subject === subjects.credsCreate()) return { name: 'creds create', target: '' };
  try {
    const c = parseCommandSubject(subject);
    switch (c.kind) {
      case 'sandbox.create':
        return subject === subjects.sandboxCreate()
          ? { name: 'sandbox create', target: '' }
          : { name: 'sandbox create --host', target: subject.split('.')[3] ?? '' };
      case 'sandbox.list':
        return { name: 'sandbox list', target: '' };
      case 'sandbox':
        return { name: `sandbox ${c.op}`, target: c.sid };
      case 'container.create':
        return { name: 'container create', target: c.sid };
      case 'container':
        return { name: `container ${c.op}`, target: `${c.sid} ${c.cid}` };
    }
  } catch {
    return undefined;
  }
}

/** The streams a client may read (events, and the streams behind the KV buckets). */
const readableStreams = () => [streams.events, kvStream(streams.sandboxBucket), kvStream(streams.hostBucket)];

/** JetStream API calls that only read: stream info and message gets. Nothing creates a consumer. */
export const readOnlyJetStreamApis = (api: string) =>
  readableStreams().flatMap((s) => [nats.jsStreamInfo(api, s), nats.jsStreamMsgGet(api, s), nats.jsDirectGet(api, s), nats.jsDirectGetLast(api, s)]);

export interface SubjectPermissions {
  pub: { allow: string[] };
  sub: { allow: string[] };
}

const pattern = (c: CommandInfo) => c.subject(ANY, ANY, ANY);

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
            subjects.eventsAll(), subjects.inspectAll(), subjects.allHost(), nats.jsApiAll(JS_API),
            nats.kvAll(streams.sandboxBucket), nats.kvAll(streams.hostBucket), nats.inboxes(), nats.serviceReplies(),
          ],
        },
        sub: { allow: [subjects.allSandbox(), subjects.allHost(), subjects.credsCreate(), nats.serviceDiscovery(), nats.inboxes()] },
      };
    case 'operator':
      return {
        // Every command: unknown per-sandbox subjects still reach a host, which refuses them.
        pub: { allow: [subjects.allSandbox(), subjects.hostSandboxCreate(ANY), subjects.credsCreate(), nats.serviceDiscovery(), ...readOnlyJetStreamApis(CLIENT_JS_API)] },
        sub: reads,
      };
    case 'viewer':
      return {
        pub: { allow: [...commands.filter((c) => !c.changesState).map(pattern), nats.serviceDiscovery(), ...readOnlyJetStreamApis(CLIENT_JS_API)] },
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
    { subject: subjects.allSandbox(), type: 'service', responseType: 'Singleton' },
    { subject: subjects.hostSandboxCreate(ANY), type: 'service', responseType: 'Singleton' },
    { subject: subjects.credsCreate(), type: 'service', responseType: 'Singleton' },
    { subject: nats.serviceDiscovery(), type: 'service', responseType: 'Stream' },
    ...readOnlyJetStreamApis(JS_API).map((subject, i) => ({
      subject, localSubject: readOnlyJetStreamApis(CLIENT_JS_API)[i], type: 'service' as const, responseType: 'Singleton' as const,
    })),
    { subject: subjects.eventsAll(), type: 'stream' },
    { subject: subjects.inspectAll(), type: 'stream' },
  ];
}
