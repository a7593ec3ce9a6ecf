// The agents that talk to a real guest; every end-to-end scenario runs for each.
export const GUEST_AGENTS: ReadonlyArray<'kata' | 'hyperstart'> = ['kata', 'hyperstart'];
