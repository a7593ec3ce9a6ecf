// NATS service discovery (ADR-32): answers $SRV.PING, $SRV.INFO and $SRV.STATS, with
// and without the service name and instance id, so that `nats micro ls` lists every
// runtime host.
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { encode } from './codec.js';
import { SERVICE_NAME, srvSubjects, srvVerbs, type SrvVerb } from './subjects.js';

/** One ADR-32 endpoint: a command, where to reach it, and its counters. */
export interface EndpointInfo {
  name: string;
  /** The subject a request is sent to (its template's parameters as wildcards). */
  listenSubject: string;
  queueGroup?: string;
  metadata: Record<string, string>;
  numRequests: number;
  numErrors: number;
  lastError: string;
  processingTimeNs: number;
}

export interface ServiceIdentity {
  /** Unique per runtime process (a nuid); the host name is in the metadata. */
  id: string;
  version: string;
  description: string;
  metadata: Record<string, string>;
  started: string;
}

export function startServiceDiscovery(
  nc: NatsConnection,
  identity: ServiceIdentity,
  endpoints: () => EndpointInfo[],
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
          endpoints: endpoints().map((e) => ({ name: e.name, subject: e.listenSubject, queue_group: e.queueGroup ?? '', metadata: e.metadata })),
        };
      case 'STATS':
        return {
          type: 'io.nats.micro.v1.stats_response',
          ...base,
          started: identity.started,
          endpoints: endpoints().map((e) => ({
            name: e.name,
            subject: e.listenSubject,
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

/** The host name in a host's $SRV answer (its id is a per-process nuid). */
export function hostOf(answer: Record<string, unknown>): string {
  return String((answer.metadata as { host?: string } | undefined)?.host ?? answer.id ?? '');
}

/** Whether a host said it publishes actor snapshots (VC_INSPECT=1); undefined when it did not say. */
export function publishesInspection(answer: Record<string, unknown> | undefined): boolean | undefined {
  const flag = (answer?.metadata as { inspect?: string } | undefined)?.inspect;
  return flag === undefined ? undefined : flag === 'true';
}
