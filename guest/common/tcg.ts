// V8 in a VM under TCG: every piece of machine code V8 makes must be translated by qemu
// before it first runs, while the interpreter's handlers are translated once, so baseline
// (Sparkplug) code costs more than it saves (kata warm-pool create+start p50 measured
// 74 ms without it, 102 ms with it). /init exports the VM's accelerator.
import { setFlagsFromString } from 'node:v8';

/** Set once the guest is up: a V8 flag given at start-up would cost Node its code cache. */
export function tuneForAccelerator(): void {
  if (process.env.VC_GUEST_ACCEL === 'tcg') setFlagsFromString('--no-sparkplug');
}
