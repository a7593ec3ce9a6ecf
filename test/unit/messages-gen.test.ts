// bus/messages.gen.ts and bus/commands.gen.ts must match protos/bus.proto (run `npm run gen`
// after editing it).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain ESM script without type declarations
import { generate, generateCommands } from '../../scripts/gen-bus-types.mjs';

describe('generated bus code', () => {
  it('message types are up to date with protos/bus.proto', () => {
    expect(readFileSync('bus/messages.gen.ts', 'utf8')).toBe(generate());
  });

  it('the command table is up to date with the Commands service of protos/bus.proto', () => {
    expect(readFileSync('bus/commands.gen.ts', 'utf8')).toBe(generateCommands());
  });
});
