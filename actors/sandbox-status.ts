// Status replies built from a container actor's snapshot.
import type * as Bus from '../bus/messages.gen.js';
import type { ContainerActorRef } from '../machines/container.js';
import { ociState } from '../machines/lifecycle.js';

export function containerStatus(ref: ContainerActorRef): Bus.ContainerStatus {
  const snap = ref.getSnapshot();
  const ctx = snap.context;
  const state = snap.status === 'done' ? 'deleted' : String(snap.value);
  const status: Bus.ContainerStatus = {
    id: ctx.id,
    state,
    ociState: ociState(state),
    pid: ctx.pid,
    spec: ctx.spec,
  };
  if (ctx.startedAt) status.startedAt = ctx.startedAt;
  if (ctx.exitStatus !== undefined) {
    status.exitStatus = ctx.exitStatus;
    status.hasExitStatus = true;
    status.exitedAt = ctx.exitedAt ?? '';
  }
  return status;
}
