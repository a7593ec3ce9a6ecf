// Status replies built from the snapshots of a sandbox actor and its containers.
import type * as Bus from '../bus/messages.gen.js';
import type { ContainerActorRef } from '../machines/container.js';
import { ociState, UNKNOWN_EXIT_STATUS } from '../machines/lifecycle.js';
import { containerRefs, type SandboxSnapshot } from '../machines/sandbox.js';
import type { SandboxSpec } from '../machines/specs.js';
import type { BackendStatus } from './backends/backend.js';

/** The state a snapshot shows; a finished actor is deleted. */
const stateOf = (snap: { status: string; value: unknown }) => (snap.status === 'done' ? 'deleted' : String(snap.value));

export function containerStatus(ref: ContainerActorRef): Bus.ContainerStatus {
  const snap = ref.getSnapshot();
  const ctx = snap.context;
  const state = stateOf(snap);
  const status: Bus.ContainerStatus = { id: ctx.id, state, ociState: ociState(state), pid: ctx.pid, spec: ctx.spec };
  if (ctx.pidUnknown) status.pidUnknown = true;
  if (ctx.startedAt) status.startedAt = ctx.startedAt;
  if (ctx.exitStatus !== undefined) {
    status.exitStatus = ctx.exitUnknown ? UNKNOWN_EXIT_STATUS : ctx.exitStatus;
    status.hasExitStatus = true;
    if (ctx.exitUnknown) status.exitStatusUnknown = true;
    status.exitedAt = ctx.exitedAt ?? '';
    if (ctx.exitReason) {
      status.exitReason = ctx.exitReason;
      status.exitMessage = ctx.exitMessage ?? '';
    }
  }
  return status;
}

export function sandboxStatus(
  snap: SandboxSnapshot,
  about: { spec: SandboxSpec; host: string; createdAt: string; backend?: BackendStatus; userNamespace?: boolean },
): Bus.SandboxStatus {
  const { spec } = about;
  const ctx = snap.context;
  const state = stateOf(snap);
  const status: Bus.SandboxStatus = {
    id: spec.id,
    state,
    ociState: ociState(state),
    agent: spec.agent,
    backend: spec.backend,
    hostname: spec.hostname,
    host: about.host,
    createdAt: about.createdAt,
    containers: containerRefs(snap).map(containerStatus),
    lastEventSeq: ctx.eventSeq,
    annotations: spec.annotations,
    monitor: spec.monitor,
    userNamespace: about.userNamespace ?? false,
  };
  if (about.backend?.vm) status.vm = about.backend.vm;
  if (ctx.failure) {
    status.failureReason = ctx.failure.reason;
    status.failureMessage = ctx.failure.message;
    status.failedAt = ctx.failure.at;
  }
  return status;
}
