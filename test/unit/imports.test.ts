// The shape of the tree: no import cycle anywhere (type-only imports included), and each
// top folder imports only what its README allows.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOTS = ['bin', 'runtime', 'actors', 'machines', 'bus', 'protos', 'guest', 'ui', 'charts'];

/** What each top folder may import besides itself (test/, bench/, scripts/ may import anything). */
const ALLOWED: Record<string, string[]> = {
  bin: ['bus', 'machines', 'protos', 'ui', 'charts'],
  ui: ['bus', 'machines', 'protos', 'charts'],
  charts: ['machines'],
  runtime: ['actors', 'machines', 'bus', 'protos'],
  actors: ['machines', 'bus', 'protos'],
  machines: ['protos'],
  bus: ['protos'],
  protos: [],
  guest: ['protos'],
};

function sources(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Every project-relative import of a file (import, import type, export from, dynamic import). */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts'));
}

const files = ROOTS.flatMap(sources);
const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => files.includes(t))]));

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
function cycles(): string[][] {
  let index = 0;
  const stack: string[] = [];
  const on = new Set<string>();
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const found: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || graph.get(v)!.includes(v)) found.push(scc.sort());
    }
  };
  for (const f of files) if (!idx.has(f)) visit(f);
  return found;
}

describe('the import graph', () => {
  it('reads the whole tree', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(graph.get('actors/sandbox-actor.ts')).toContain('actors/sandbox-commands.ts');
  });

  it('has no cycle, type-only imports included', () => {
    expect(cycles()).toEqual([]);
  });

  it('keeps every folder to the imports its README allows', () => {
    const breaches: string[] = [];
    for (const [file, targets] of graph) {
      const from = file.split('/')[0]!;
      for (const target of targets) {
        const to = target.split('/')[0]!;
        if (to !== from && !ALLOWED[from]!.includes(to)) breaches.push(`${relative('.', file)} → ${target}`);
      }
    }
    expect(breaches).toEqual([]);
  });
});
