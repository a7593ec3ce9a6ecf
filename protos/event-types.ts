// The lifecycle event types of the bus contract, in one place: the statecharts emit
// them, the publisher files them under vc.v1.evt.…<type>, docs/events.md and the Event
// message of bus.proto list them (test/unit/event-types.test.ts checks all agree).

/** Events of a sandbox itself: vc.v1.evt.sandbox.<sid>.<type>. */
export const SANDBOX_EVENT_TYPES = ['create', 'start', 'pause', 'resume', 'stop', 'fail', 'delete'] as const;
/** Events of a container's init process: vc.v1.evt.sandbox.<sid>.container.<cid>.<type>. */
export const CONTAINER_EVENT_TYPES = ['create', 'start', 'pause', 'resume', 'oom', 'exit', 'delete'] as const;
/** Events of an exec, on its container's subject with execId set (`oom` just before an OOM kill's exit). */
export const EXEC_EVENT_TYPES = ['exec-added', 'exec-started', 'oom', 'exit'] as const;

/**
 * Events about hosts: vc.v1.evt.host.<host>.<type>, not numbered. `lost`: the host
 * stopped heartbeating (published by the others); `forget`: an operator dropped the
 * record of one of its sandboxes; `reap`: the host, back, stopped the guest of a
 * sandbox whose record was forgotten meanwhile.
 */
export const HOST_EVENT_TYPES = ['lost', 'forget', 'reap'] as const;
export type HostEventType = (typeof HOST_EVENT_TYPES)[number];

export type SandboxEventType = (typeof SANDBOX_EVENT_TYPES)[number];
export type ContainerEventType = (typeof CONTAINER_EVENT_TYPES)[number];
export type ExecEventType = (typeof EXEC_EVENT_TYPES)[number];
export type EventType = SandboxEventType | ContainerEventType | ExecEventType;

/** Every event type, each once. */
export const EVENT_TYPES: readonly EventType[] = [...new Set<EventType>([...SANDBOX_EVENT_TYPES, ...CONTAINER_EVENT_TYPES, ...EXEC_EVENT_TYPES])];
