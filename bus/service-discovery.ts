// NATS service discovery (ADR-32): answers $SRV.PING, $SRV.INFO and $SRV.STATS, with
// and without the service name and instance id, so that `nats micro ls` lists every
// runtime host.
import { createInbox, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { decodeTrusted, encode } from './codec.js';
import { SERVICE_NAME, srvSubjects, srvVerbs, type SrvVerb } from './subjects.js';

export interface EndpointStats {
  name: string;
  subject: string;
  queueGroup?: string;
  numRequests: number;
  numErrors: number;
  lastError: string;
  processingTimeNs: number;
}

export interface ServiceIdentity {
  id: string;
  version: string;
  description: string;
  metadata: Record<string, string>;
  started: string;
}

export function startServiceDiscovery(
  nc: NatsConnection,
  identity: ServiceIdentity,
  endpoints: () => EndpointStats[],
): Subscription[] {
  const base = { name: SERVICE_NAME, id: identity.id, version: identity.version, metadata: identity.metadata };
  const answer = (verb: SrvVerb): object => {
    switch (verb) {
      case 'PING':
        return { type: 'io.nats.micro.v1.ping_response', ...base };
      case 'INFO':
        return {
          type: 'io.nats.micro.v1.info_response',
          ...base,
          description: identity.description,
          endpoints: endpoints().map((e) => ({ name: e.name, subject: e.subject, queue_group: e.queueGroup ?? '', metadata: null })),
        };
      case 'STATS':
        return {
          type: 'io.nats.micro.v1.stats_response',
          ...base,
          started: identity.started,
          endpoints: endpoints().map((e) => ({
            name: e.name,
            subject: e.subject,
            queue_group: e.queueGroup ?? '',
            num_requests: e.numRequests,
            num_errors: e.numErrors,
            last_error: e.lastError,
            processing_time: e.processingTimeNs,
            average_processing_time: e.numRequests ? Math.round(e.processingTimeNs / e.numRequests) : 0,
          })),
        };
    }
  };
  const subs: Subscription[] = [];
  for (const verb of srvVerbs) {
    for (const subject of srvSubjects(verb, identity.id)) {
      subs.push(
        nc.subscribe(subject, {
          callback: (err, msg) => {
            if (!err) msg.respond(encode(answer(verb)));
          },
        }),
      );
    }
  }
  return subs;
}

/** What a host answers to $SRV.INFO (the fields tools read). */
export interface HostInfo {
  id: string;
  version: string;
  metadata: Record<string, string>;
  endpoints: unknown[];
}

/** Every host that answers $SRV.INFO within `waitMs` (one scatter, answers gathered). */
export async function discoverHosts(nc: NatsConnection, waitMs = 1000): Promise<HostInfo[]> {
  const [subject] = srvSubjects('INFO', '');
  const found: HostInfo[] = [];
  const inbox = nc.subscribe(createInbox(), {
    callback: (err, m) => {
      if (!err) found.push(decodeTrusted<HostInfo>(m.data));
    },
  });
  nc.publish(subject!, new Uint8Array(), { reply: inbox.getSubject() });
  await new Promise((r) => setTimeout(r, waitMs));
  inbox.unsubscribe();
  return found.sort((a, b) => a.id.localeCompare(b.id));
}

/** One host's $SRV.INFO answer, or undefined when it does not answer within `timeoutMs`. */
export async function hostInfo(nc: NatsConnection, host: string, timeoutMs = 1000): Promise<HostInfo | undefined> {
  const subject = srvSubjects('INFO', host)[2]!;
  try {
    return decodeTrusted<HostInfo>((await nc.request(subject, new Uint8Array(), { timeout: timeoutMs })).data);
  } catch {
    return undefined;
  }
}

/** Whether a host said it publishes actor snapshots; undefined when it did not say. */
export function publishesInspection(info: HostInfo | undefined): boolean | undefined {
  const flag = info?.metadata?.inspect;
  return flag === undefined ? undefined : flag === 'true';
}
