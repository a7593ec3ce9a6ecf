// runc on a host without user namespaces (VC_USERNS=0): the guest is real root there, so
// runc could write into the host's named cgroup hierarchies (name=systemd), where the
// sandbox has no cgroup; it runs without them. Only the placement scenario (./runc-scenarios.ts), for kata:
// the rest does not change with the setting.
process.env.VC_OCI_RUNTIME = 'runc';
// Read when the backends are registered, on the first import of the runtime below.
process.env.VC_USERNS = '0';
const { useRuntime } = await import('../helpers/runtime.js');
const { runcScenarios } = await import('./runc-scenarios.js');

const rt = useRuntime({ host: 'runc-root' });
runcScenarios(rt, 'kata', { placementOnly: true, userNamespace: false, idPrefix: 'runcroot' });
