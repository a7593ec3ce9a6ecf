// `creds create` on the bus: a host that holds the authority's signing keys signs a
// user JWT for a public key the caller generated. Only operators may publish the
// request (the server's permissions say so), and the seed stays with the caller.
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { decode, encode } from './codec.js';
import { signUser, isUserPublicKey, type Authority } from './credentials.js';
import { invalidArgument, toVcError } from './errors.js';
import { respondError } from './command-service.js';
import type { CredsCreateRequest } from './messages.gen.js';
import { isRole, ROLES } from './roles.js';
import { checkId, QUEUE_GROUP, subjects } from './subjects.js';

export function startCredsService(nc: NatsConnection, authority: Authority, log: Logger): Subscription {
  return nc.subscribe(subjects.credsCreate(), {
    queue: QUEUE_GROUP,
    callback: (err, msg) => {
      if (err) return;
      void (async () => {
        try {
          const req = decode<CredsCreateRequest>('CredsCreateRequest', msg.data);
          if (!isRole(req.role)) throw invalidArgument(`role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(req.role ?? '')}`);
          const name = checkId('user', req.name);
          if (!isUserPublicKey(req.publicKey ?? '')) throw invalidArgument('publicKey must be a NATS user public key (U...)');
          const jwt = await signUser(authority, req.role, name, req.publicKey!);
          // Who got what, never the JWT itself.
          log.info({ user: name, role: req.role }, 'credentials signed');
          msg.respond(encode({ ok: true, jwt }));
        } catch (e) {
          respondError(msg, toVcError(e));
        }
      })();
    },
  });
}
