// The sandbox statechart with every operation provided: what each invoked or spawned
// actor of the sandbox, container, process and monitor statecharts does, in terms of the
// sandbox's operations (sandbox-operations.ts). Each gets its actor's AbortSignal (it
// aborts when the state is left, the actor stopped or the host stops) and the command's
// deadline from its input.
import { fromPromise } from 'xstate';
import { ErrorCode, toVcError, VcError } from '../bus/errors.js';
import { sandboxMachine, type OnlineCpuMemInput, type SandboxOpInput } from '../machines/sandbox.js';
import { containerMachine, type ContainerOpInput, type KillInput, type PsInput, type ResizeInput } from '../machines/container.js';
import { processMachine, type ProcessInput, type ProcessStartOutput } from '../machines/process.js';
import { monitorMachine, type CheckInput } from '../machines/monitor.js';
import type { Limits, SandboxOperations } from './sandbox-operations.js';

/**
 * The sandbox statechart with its operations provided, built once per host: every
 * operation finds its sandbox's operations by id, so no sandbox pays for a machine of
 * its own.
 */
export function sandboxLogic(lookup: (sandboxId: string) => SandboxOperations | undefined) {
  const ops = (sandboxId: string): SandboxOperations => {
    const found = lookup(sandboxId);
    if (!found) throw new VcError(ErrorCode.Internal, `sandbox ${sandboxId} is not loaded`);
    return found;
  };
  /** An operation whose errors reach the chart as VcErrors (code and message kept). */
  const op = <I extends { sandboxId: string; deadline?: number }, O>(run: (o: SandboxOperations, input: I, limits: Limits) => Promise<O>) =>
    fromPromise<O, I>(async ({ input, signal }) => {
      try {
        return await run(ops(input.sandboxId), input, { signal, deadline: input.deadline });
      } catch (err) {
        throw toVcError(err);
      }
    });
  return sandboxMachine.provide({
    actors: {
      createSandbox: op<SandboxOpInput, void>((o, _, l) => o.createSandbox(l)),
      bootGuest: op<SandboxOpInput, void>((o, _, l) => o.bootGuest(l)),
      startSandbox: op<SandboxOpInput, void>((o, _, l) => o.startContainers(l)),
      pauseSandbox: op<SandboxOpInput, void>((o, _, l) => o.pauseContainers(l)),
      resumeSandbox: op<SandboxOpInput, void>((o, _, l) => o.resumeContainers(l)),
      stopSandbox: op<SandboxOpInput, void>((o, _, l) => o.stopSandbox(l)),
      deleteSandbox: op<SandboxOpInput, void>((o, _, l) => o.deleteSandbox(l)),
      onlineCpuMem: op<OnlineCpuMemInput, void>((o, i, l) => o.onlineCpuMem(i.cpus, l)),
      container: containerMachine.provide({
        actors: {
          createContainer: op<ContainerOpInput, void>((o, i, l) => o.createContainer(i.spec, l)),
          startContainer: op((o, i: ContainerOpInput, l) => o.startContainer(i.containerId, l)),
          stopContainer: op((o, i: ContainerOpInput, l) => o.stopContainer(i.containerId, l)),
          pauseContainer: op<ContainerOpInput, void>((o, i, l) => o.pauseContainer(i.containerId, l)),
          resumeContainer: op<ContainerOpInput, void>((o, i, l) => o.resumeContainer(i.containerId, l)),
          deleteContainer: op<ContainerOpInput, void>((o, i, l) => o.deleteContainer(i.containerId, l)),
          killContainer: op<KillInput, void>((o, i, l) => o.killContainer(i.containerId, i.signal, i.all, l)),
          listProcesses: op<PsInput, string>((o, i, l) => o.listProcesses(i.containerId, i.format, i.args, l)),
          resizeTerminal: op<ResizeInput, void>((o, i, l) => o.resizeTerminal(i.containerId, i.execId, i.rows, i.cols, l)),
          containerStats: op<ContainerOpInput, unknown>((o, i, l) => o.containerStats(i.containerId, l)),
          process: processMachine.provide({
            actors: {
              startProcess: op<ProcessInput, ProcessStartOutput>((o, i, l) => o.startProcess(i.containerId, i.execId, i.process, l)),
            },
          }),
        },
      }),
      monitor: monitorMachine.provide({
        actors: {
          checkAgent: fromPromise<void, CheckInput>(({ input, signal }) => ops(input.sandboxId).checkGuest(input.deadlineMs, signal)),
        },
      }),
    },
  });
}

export type SandboxLogic = ReturnType<typeof sandboxLogic>;
