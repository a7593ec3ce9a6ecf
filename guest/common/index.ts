// The guest process supervisor, shared by the guest agents.
export { Supervisor, filterPsTable, type ContainerConfig, type ContainerState, type OutputStream, type ProcessListFormat, type SupervisorOptions } from './supervisor.js';
export type { ProcessSpec } from './process.js';
export { Reaper } from './reaper.js';
export { detectCgroups, type CgroupChoice, type CgroupDriver, type CgroupStats, type Resources } from './cgroups/index.js';
export { GuestError, toGuestError, type GuestErrorCode } from './errors.js';
export { guestLog, silentLog, type GuestLog } from './log.js';
export { parseUser, type UserRef } from './user.js';
export { procIsOurs } from './proc.js';
export { findPort, SerialPort, waitForPort } from './serial.js';
export { mount9p, NINEP_OPTIONS, noteMounts, sharedPath, unmount } from './mounts.js';
export { claimSocketPath, ownSocket, type OwnSocket } from './socket-file.js';
export { detectOciRuntime, OCI_RUNTIME_ENV, type OciChoice, type OciRuntime } from './oci/runtime.js';
export { guestStateDir, type GuestStateDir } from './state-dir.js';
export { PRIVILEGED_ANNOTATION, relaxationsIn, type SpecRelaxations } from './oci/relaxations.js';
export { tuneForAccelerator } from './tcg.js';
