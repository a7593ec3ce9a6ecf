// The sandbox statechart with every operation provided: what each invoked actor of the
// sandbox, container and monitor statecharts does, in terms of the sandbox actor.
import { fromPromise } from 'xstate';
import { ErrorCode, toVcError, VcError } from '../bus/errors.js';
import { sandboxMachine, type SandboxOpInput } from '../machines/sandbox.js';
import { containerMachine, type ContainerOpInput, type ContainerStartOutput } from '../machines/container.js';
import { monitorMachine, type CheckInput } from '../machines/monitor.js';
import type { SandboxActor } from './sandbox-actor.js';

const now = () => new Date().toISOString();

/**
 * The sandbox statechart with its operations provided, built once per host: every
 * operation finds its sandbox actor by id, so no sandbox pays for a machine of its own.
 */
export function sandboxLogic(lookup: (sandboxId: string) => SandboxActor | undefined) {
  const owner = (sandboxId: string): SandboxActor => {
    const sandbox = lookup(sandboxId);
    if (!sandbox) throw new VcError(ErrorCode.Internal, `sandbox ${sandboxId} is not loaded`);
    return sandbox;
  };
  const op = (fn: (sandbox: SandboxActor) => Promise<void>) =>
    fromPromise<void, SandboxOpInput>(({ input }) => fn(owner(input.sandboxId)));
  const cop = <T>(fn: (sandbox: SandboxActor, input: ContainerOpInput) => Promise<T>) =>
    fromPromise<T, ContainerOpInput>(async ({ input }) => {
      try {
        return await fn(owner(input.sandboxId), input);
      } catch (err) {
        throw toVcError(err);
      }
    });
  return sandboxMachine.provide({
    actors: {
      createSandbox: op((s) => s.bootSandbox(true)),
      bootGuest: op((s) => s.bootSandbox(false)),
      startSandbox: op((s) => s.forEachContainer('START', (state) => state === 'ready' || state === 'stopped')),
      pauseSandbox: op((s) => s.forEachContainer('PAUSE', (state) => state === 'running')),
      resumeSandbox: op((s) => s.forEachContainer('RESUME', (state) => state === 'paused')),
      stopSandbox: op((s) => s.stopGuest()),
      deleteSandbox: op((s) => s.releaseSandbox()),
      container: containerMachine.provide({
        actors: {
          createContainer: cop((s, { spec }) => s.agent.call('createContainer', (a, abort) => a.createContainer(spec, abort))),
          startContainer: cop(async (s, { containerId }): Promise<ContainerStartOutput> => {
            const { pid, pidUnknown } = await s.agent.call('startContainer', (a, abort) => a.startContainer(containerId, abort));
            return { pid, pidUnknown: !!pidUnknown, startedAt: now() };
          }),
          stopContainer: cop(async (s, { containerId }) => {
            // A dead guest has nothing left to stop.
            if (s.agent.isDead()) return {};
            return (await s.agent.call('stopContainer', (a, abort) => a.stopContainer(containerId, abort))) ?? {};
          }),
          pauseContainer: cop((s, { containerId }) => s.agent.call('pauseContainer', (a, abort) => a.pauseContainer(containerId, abort))),
          resumeContainer: cop((s, { containerId }) => s.agent.call('resumeContainer', (a, abort) => a.resumeContainer(containerId, abort))),
          deleteContainer: cop(async () => {}),
        },
      }),
      monitor: monitorMachine.provide({
        actors: {
          checkAgent: fromPromise<void, CheckInput>(({ input, signal }) => owner(input.sandboxId).checkGuest(input.deadlineMs, signal)),
        },
      }),
    },
  });
}

export type SandboxLogic = ReturnType<typeof sandboxLogic>;
