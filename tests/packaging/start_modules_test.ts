/**
 * What the proxy loads before it answers: the static module graph of main.ts (what `deno run main.ts` loads and
 * evaluates before its first line runs) leaves out what only a download, a database, a page view or another
 * command needs. Those are imported with literal specifiers where first used, so that `deno compile` still
 * includes them: they are in the whole graph, dynamic imports included.
 */

import { join } from "node:path";
import { assert } from "../helpers/assert.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/** Modules the proxy does not need before its first answer (each costs start-up time and idle memory). */
const LATER = [
  "node:crypto", // SHA-256 of a verified download: src/download/download_integrity.ts
  "npm:/fzstd@", // a zstd repository database: src/repo/zstd_stream.ts
  "npm:/xxhash-wasm@",
  "npm:/xz-decompress@",
  "npm:/prom-client@", // the first scrape of /metrics
  "src/repo/zstd_stream.ts",
  "src/status/metrics.ts",
  "src/status/status_page.ts", // the first view of the status page
  "src/status/status_page_script.ts",
  "src/mirrors/mirror_status.ts", // the first round of mirror ranking (not with predefined mirrors)
  "src/mirrors/latency_test.ts",
  "src/cache/import.ts", // flexo import
  "src/prefetch/prefetch_command.ts", // flexo prefetch
];

/**
 * Modules the serving process does not load at all: `node:fs` costs about 3 MiB of idle memory and 30-45 ms of
 * start-up, and the cache's check of a miss uses the C library's `access` instead (src/cache/surely_missing.ts);
 * `node:net` cost 12-16 ms and about 2 MiB, and `allowed_clients` are matched by src/app/access_control.ts.
 */
const NOT_AT_START = ["node:fs", "node:net"];

interface ModuleInfo {
  specifier: string;
  dependencies?: { code?: { specifier: string }; isDynamic?: boolean }[];
}

/** `deno info --json main.ts`: every module of the graph, and its imports. */
async function moduleGraph(): Promise<
  { root: string; modules: Map<string, ModuleInfo>; redirects: Record<string, string> }
> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", join(ROOT, "main.ts")],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(output.success, `deno info failed: ${new TextDecoder().decode(output.stderr)}`);
  const info = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    roots: string[];
    modules: ModuleInfo[];
    redirects: Record<string, string>;
  };
  return {
    root: info.roots[0],
    modules: new Map(info.modules.map((module) => [module.specifier, module])),
    redirects: info.redirects,
  };
}

/** The modules reachable from `root` through imports; with `dynamic` false, through static imports only. */
function reachable(
  graph: Awaited<ReturnType<typeof moduleGraph>>,
  options: { dynamic: boolean },
): Set<string> {
  const seen = new Set<string>();
  const pending = [graph.root];
  while (pending.length > 0) {
    const asked = pending.pop()!;
    const specifier = graph.redirects[asked] ?? asked;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dependency of graph.modules.get(specifier)?.dependencies ?? []) {
      if (dependency.code === undefined || (dependency.isDynamic && !options.dynamic)) continue;
      pending.push(dependency.code.specifier);
    }
  }
  return seen;
}

Deno.test("main.ts loads no module before its first answer that only a download, a database, a page view or another command needs", async () => {
  const graph = await moduleGraph();
  const loadedAtStart = [...reachable(graph, { dynamic: false })];
  const everything = [...reachable(graph, { dynamic: true })];
  const matching = (modules: string[], wanted: string) =>
    modules.filter((specifier) => specifier.startsWith(wanted) || specifier.endsWith(`/${wanted}`));
  for (const wanted of LATER) {
    assert(
      matching(loadedAtStart, wanted).length === 0,
      `${wanted} is imported statically (loaded at start-up); import it where it is first needed`,
    );
    assert(
      matching(everything, wanted).length > 0,
      `${wanted} is not in the graph at all: deno compile would leave it out`,
    );
  }
  for (const wanted of NOT_AT_START) {
    assert(
      matching(loadedAtStart, wanted).length === 0,
      `${wanted} is imported statically (loaded at start-up); the serving process does without it`,
    );
  }
  assert(
    loadedAtStart.some((specifier) => specifier.endsWith("/src/app/app.ts")),
    "the graph was read: app.ts is there",
  );
});

Deno.test("main.ts loads only modules of its own written in ASCII: V8 keeps each module's text as two bytes a character when one is not", async () => {
  const graph = await moduleGraph();
  const own = [...reachable(graph, { dynamic: false })].filter((specifier) =>
    specifier.startsWith(new URL(ROOT, "file:///").href)
  );
  assert(own.length > 50, `the graph was read: ${own.length} modules of flexo's own`);
  for (const specifier of own) {
    const text = await Deno.readTextFile(new URL(specifier));
    const at = [...text].findIndex((character) => character.charCodeAt(0) > 0x7f);
    const line = text.slice(0, at).split("\n").length;
    assert(
      at < 0,
      `${
        specifier.slice(ROOT.length + "file://".length)
      }:${line} has a non-ASCII character; the module's text ` +
        "(about 3 times its size with the source map Deno adds) would take twice the memory: write it in ASCII " +
        "(an escape such as \\u00b5 in code, plain words in comments)",
    );
  }
});
