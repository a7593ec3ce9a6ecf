// What an OCI spec received from the host asks for beyond the defaults every container gets.
// The guest builds each bundle from its own defaults and takes only the process, root,
// hostname and resources from a request; anything a request asks for that those defaults
// would drop silently (more capabilities, other mounts, joining namespaces by path) is
// refused instead, unless the container is marked privileged.
import { ALL_CAPABILITIES, DEFAULT_CAPABILITIES } from './defaults.js';
import { STANDARD_MOUNT_DESTINATIONS } from './spec.js';

export { PRIVILEGED_ANNOTATION } from '../../../protos/annotations.js';

/** The parts of an OCI spec this check reads, in the kata protocol's spelling. */
export interface SpecRelaxations {
  Process?: { Capabilities?: { Bounding?: string[]; Effective?: string[]; Permitted?: string[]; Inheritable?: string[]; Ambient?: string[] } };
  Mounts?: { destination?: string; type?: string; source?: string }[];
  Linux?: { Namespaces?: { Type?: string; Path?: string }[] };
}

const allowed = new Set<string>(DEFAULT_CAPABILITIES);
const known = new Set<string>(ALL_CAPABILITIES);

/** Each relaxation the spec asks for, in words; [] when it asks for none. */
export function relaxationsIn(spec: SpecRelaxations): string[] {
  const out: string[] = [];
  const caps = spec.Process?.Capabilities;
  if (caps) {
    const extra = new Set<string>();
    for (const list of [caps.Bounding, caps.Effective, caps.Permitted, caps.Inheritable, caps.Ambient]) {
      for (const c of list ?? []) if (!allowed.has(c)) extra.add(c);
    }
    for (const c of extra) out.push(known.has(c) ? `capability ${c}` : `unknown capability ${c}`);
  }
  for (const m of spec.Mounts ?? []) {
    if (!m.destination || !STANDARD_MOUNT_DESTINATIONS.has(m.destination) || m.type === 'bind') out.push(`mount of ${m.source ?? '?'} on ${m.destination ?? '?'}`);
  }
  for (const ns of spec.Linux?.Namespaces ?? []) {
    if (ns.Path) out.push(`joining the ${ns.Type ?? '?'} namespace at ${ns.Path}`);
  }
  return out;
}
