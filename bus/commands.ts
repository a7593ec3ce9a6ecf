// Typed access to the command table (bus/commands.gen.ts, generated from the Commands
// service in protos/bus.proto): names, request and reply types, subjects, routes.
import { commandTable, type CommandDef, type CommandName, type CommandTypes } from './commands.gen.js';
import { commandSubject } from './subjects.js';

export { commandTable, type CommandDef, type CommandName, type CommandTypes };

export type CommandRequest<C extends CommandName> = CommandTypes[C]['request'];
export type CommandReply<C extends CommandName> = CommandTypes[C]['reply'];
export type CommandParams<C extends CommandName> = CommandTypes[C]['params'];
/** What a handler returns: the reply without its `ok`, which the service adds. */
export type ReplyBody<C extends CommandName> = Omit<CommandReply<C>, 'ok'>;

export const commands = Object.fromEntries(commandTable.map((def) => [def.name, def])) as Readonly<Record<CommandName, CommandDef>>;

/**
 * Where a command goes: `host` to the host its subject names, `sandbox` to the host
 * that owns the sandbox (forwarded by whichever host receives it), `any` to one host of
 * the queue group.
 */
export type Route = 'any' | 'host' | 'sandbox';

export function routeOf(def: CommandDef): Route {
  if (def.params.includes('host')) return 'host';
  return def.params.includes('sid') ? 'sandbox' : 'any';
}

/** The subject of a command with its parameters filled in (ids checked). */
export function subjectOf<C extends CommandName>(name: C, params: CommandParams<C>): string {
  return commandSubject(commands[name].subject, params as Record<string, string>);
}

/** ADR-32 endpoint name of a command: SandboxStart → sandbox-start. */
export const endpointName = (def: CommandDef): string => def.name.replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase();
