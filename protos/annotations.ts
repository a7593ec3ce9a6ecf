// Annotations with a meaning between the runtime and its guests.

/**
 * Set by the runtime, and only by it, on a container it allowed to be privileged (the
 * caller had the right to ask). A guest relaxes a container's confinement for nothing else;
 * the runtime overwrites whatever a client put under this key.
 */
export const PRIVILEGED_ANNOTATION = 'io.virtactors.privileged';
