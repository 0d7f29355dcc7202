// Fails when the modules under src/ import each other in a cycle. Type-only imports count too: a
// cycle of types is still two modules that cannot be understood (or moved) one without the other.
// Run by `npm run lint`.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const root = resolve(import.meta.dirname, '..', 'src');

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return files(path);
    return path.endsWith('.ts') && !path.endsWith('.d.ts') ? [path] : [];
  });
}

/** The src/ files `file` imports or re-exports from, by static declarations. */
function imports(file) {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
  const out = [];
  for (const node of source.statements) {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      const spec = node.moduleSpecifier.text;
      if (spec.startsWith('.')) out.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
    }
  }
  return out;
}

const graph = new Map(files(root).map((f) => [f, imports(f)]));
const state = new Map(); // undefined: unvisited, 1: on the stack, 2: done
const stack = [];
const cycles = [];

function visit(file) {
  state.set(file, 1);
  stack.push(file);
  for (const next of graph.get(file) ?? []) {
    if (!graph.has(next)) continue;
    if (state.get(next) === 1) cycles.push([...stack.slice(stack.indexOf(next)), next]);
    else if (state.get(next) === undefined) visit(next);
  }
  stack.pop();
  state.set(file, 2);
}

for (const file of graph.keys()) if (state.get(file) === undefined) visit(file);
if (cycles.length > 0) {
  for (const cycle of cycles) console.error('import cycle: ' + cycle.map((f) => relative(root, f)).join(' -> '));
  process.exit(1);
}
console.log(`no import cycle among ${graph.size} modules under src/`);
