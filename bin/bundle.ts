// OCI bundles: DIR/config.json (runtime-spec) read into the bus's container spec.
import type * as Bus from '../bus/messages.gen.js';
export function readBundle(_dir: string): Bus.ContainerSpec {
  return {};
}
