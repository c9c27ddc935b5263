/**
 * The developers' guide's rules for the source, checked rather than remembered: no import circles among
 * flexo's own modules, no state kept at a module's top level, and files of a readable size.
 *
 * @module
 */

import { assertEquals } from "./helpers/assert.ts";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** The guide says "files under ~500 lines"; a module that outgrows this is split by concern. */
const MAX_LINES = 500;

/** Every `.ts` file under `dir` (relative to the checkout), sorted. */
function tsFiles(dir: string): string[] {
  const found: string[] = [];
  const walk = (path: string) => {
    for (const entry of Deno.readDirSync(join(ROOT, path))) {
      const child = `${path}/${entry.name}`;
      if (entry.isDirectory) walk(child);
      else if (entry.name.endsWith(".ts")) found.push(child);
    }
  };
  walk(dir);
  return found.sort();
}

/** The import graph of the checkout's own modules reachable from `entries` (type-only imports included). */
async function importGraph(entries: string[]): Promise<Map<string, Set<string>>> {
  const graph = new Map<string, Set<string>>();
  const root = new URL("../", import.meta.url).href;
  for (const entry of entries) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(`deno info ${entry} failed: ${new TextDecoder().decode(out.stderr)}`);
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: {
        specifier: string;
        dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
      }[];
    };
    for (const module of info.modules) {
      if (!module.specifier.startsWith(root)) continue;
      const edges = graph.get(module.specifier.slice(root.length)) ?? new Set<string>();
      graph.set(module.specifier.slice(root.length), edges);
      for (const dependency of module.dependencies ?? []) {
        for (const target of [dependency.code?.specifier, dependency.type?.specifier]) {
          if (target?.startsWith(root)) edges.add(target.slice(root.length));
        }
      }
    }
  }
  return graph;
}

/** The strongly connected groups of more than one module (Tarjan's algorithm), each sorted. */
export function importCircles(graph: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const circles: string[][] = [];
  const visit = (node: string) => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const group: string[] = [];
    for (let member = stack.pop()!;; member = stack.pop()!) {
      onStack.delete(member);
      group.push(member);
      if (member === node) break;
    }
    if (group.length > 1 || graph.get(node)?.has(node)) circles.push(group.sort());
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return circles;
}

/**
 * What a module keeps at its top level that could change after it is loaded: `let` and `var`, a `Map` or
 * `WeakMap`, and a `Set` that the module adds to, deletes from or clears (a `Set` only read is a lookup table).
 */
export function topLevelState(text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(/^(?:export\s+)?(let|var)\s+(\w+)/gm)) {
    found.push(`${match[1]} ${match[2]}`);
  }
  for (
    const match of text.matchAll(
      /^(?:export\s+)?const\s+(\w+)(?:\s*:[^=\n]+)?\s*=\s*new\s+(WeakMap|Map|Set)\b/gm,
    )
  ) {
    const [, name, kind] = match;
    if (kind !== "Set" || new RegExp(`\\b${name}\\.(?:add|delete|clear)\\(`).test(text)) {
      found.push(`${kind} ${name}`);
    }
  }
  return found;
}

Deno.test("importCircles() finds a circle of two modules and of one that imports itself, and none in a chain", () => {
  const graph = (edges: [string, string][]) => {
    const result = new Map<string, Set<string>>();
    for (const [from, to] of edges) {
      result.set(from, (result.get(from) ?? new Set()).add(to));
      if (!result.has(to)) result.set(to, new Set());
    }
    return result;
  };
  assertEquals(importCircles(graph([["a", "b"], ["b", "c"], ["c", "a"], ["c", "d"]])), [["a", "b", "c"]]);
  assertEquals(importCircles(graph([["a", "a"]])), [["a"]]);
  assertEquals(importCircles(graph([["a", "b"], ["b", "c"], ["a", "c"]])), []);
});

Deno.test("topLevelState() names top-level let, var, Map, WeakMap and a Set that changes, and nothing indented", () => {
  const text = [
    "let cache: string | undefined;",
    "export var count = 0;",
    "const TABLE = new Map<string, number>();",
    "const SEEN: WeakMap<object, number> = new WeakMap();",
    'const NAMES = new Set(["a"]);',
    "const GROWN = new Set<string>();",
    "export function f() {",
    "  let local = 1;",
    "  const inner = new Map();",
    "  GROWN.add(String(local + inner.size));",
    '  return NAMES.has("a");',
    "}",
  ].join("\n");
  assertEquals(topLevelState(text), ["let cache", "var count", "Map TABLE", "WeakMap SEEN", "Set GROWN"]);
});

Deno.test("main.ts and mod.ts load flexo's modules without an import circle", async () => {
  const graph = await importGraph(["main.ts", "mod.ts"]);
  // The graph holds the whole application: a broken `deno info` would leave it (and this test) empty.
  assertEquals(graph.has("src/app/app.ts") && graph.has("src/server/server.ts"), true);
  assertEquals(importCircles(graph), []);
});

Deno.test("no module under src/ keeps state at its top level, and main.ts and mod.ts neither", () => {
  const files = [...tsFiles("src"), "main.ts", "mod.ts"];
  const state = files.flatMap((file) =>
    topLevelState(Deno.readTextFileSync(join(ROOT, file))).map((what) => `${file}: ${what}`)
  );
  assertEquals(state, []);
});

Deno.test(`every module of src/, tests/ and scripts/ has at most ${MAX_LINES} lines`, () => {
  const files = [...tsFiles("src"), ...tsFiles("tests"), ...tsFiles("scripts"), "main.ts", "mod.ts"];
  const long = files
    .map((file) => ({
      file: relative(ROOT, join(ROOT, file)),
      lines: Deno.readTextFileSync(join(ROOT, file)).split("\n").length - 1,
    }))
    .filter(({ lines }) => lines > MAX_LINES)
    .map(({ file, lines }) => `${file}: ${lines} lines`);
  assertEquals(long, []);
});
