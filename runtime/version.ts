// The runtime's version, as reported by service discovery and the CLI.
export const VERSION = '0.1.0';
