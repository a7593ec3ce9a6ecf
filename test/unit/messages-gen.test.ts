// bus/messages.gen.ts must match protos/bus.proto (run `npm run gen` after editing it).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain ESM script without type declarations
import { generate } from '../../scripts/gen-bus-types.mjs';

describe('generated bus message types', () => {
  it('are up to date with protos/bus.proto', () => {
    expect(readFileSync('bus/messages.gen.ts', 'utf8')).toBe(generate());
  });
});
