/**
 * `flexo prefetch [--dry-run]` as a user runs it: main.ts as a process, with the proxy's configuration file.
 * With the proxy running it asks the proxy (so nothing is fetched twice); with none, it runs the pass itself
 * on the cache directory. The origin's requests are counted to see what was fetched.
 */

import { join } from "node:path";
import { lockCacheDirectory } from "../../src/cache/cache_lock.ts";
import { describePrefetch, prefetchOnce } from "../../src/prefetch/prefetch_command.ts";
import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { runFlexo, startFlexo, tomlString, writeConfig } from "../helpers/flexo_process.ts";
import { assertToolsAvailable } from "../helpers/make_repo.ts";
import {
  FOLDER,
  OTHER_NEW,
  type PrefetchOrigin,
  publish,
  startPrefetchOrigin,
  TOOL_NEW,
  TOOL_OLD,
} from "../helpers/prefetch_repo.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { testConfig } from "../helpers/test_app.ts";
import { waitFor } from "../helpers/wait.ts";

await assertToolsAvailable(["repo-add", "bsdtar", "zstd"]);

/** A port nothing listens on now (the configuration file must name the proxy's port for the command). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** The proxy's configuration file, shared by the proxy and the command, as on a real host. */
function configFor(origin: PrefetchOrigin, port: number, extra = ""): Promise<string> {
  return writeConfig(
    origin.dir,
    [
      `cache_directory = ${tomlString(origin.cacheDir)}`,
      `mirrorlist_fallback_file = ${tomlString(join(origin.dir, "state", "mirrorlist"))}`,
      `mirrorlist_latency_test_results_file = ${tomlString(join(origin.dir, "state", "latency.json"))}`,
      `port = ${port}`,
      'listen_ip_address = "127.0.0.1"',
      'mirror_selection_method = "predefined"',
      `mirrors_predefined = [${tomlString(origin.mirror.url)}]`,
      extra,
      "[prefetch]",
      "enabled = true",
    ].join("\n"),
  );
}

/** Runs `flexo prefetch [...args] --config path` to its end. */
async function prefetchCommand(config: string, args: string[] = []) {
  const result = await runFlexo(["prefetch", ...args, "--config", config], { timeoutMs: 60_000 });
  return { ...result, lines: result.stdout.trim().split("\n") };
}

/** Starts the proxy of `config`, through which a client fetches tool 0.9-1; the proxy is left running. */
async function clientFetchedTool(config: string) {
  const proxy = await startFlexo(config);
  const old = await fetch(`${proxy.url}/${FOLDER}/${TOOL_OLD}`);
  assertEquals(old.status, 200);
  await old.body?.cancel();
  return proxy;
}

const DRY_RUN_NOTE = "Dry run: nothing was downloaded or written. The list comes from the databases in the " +
  "cache; a pass revalidates them first and may find newer versions.";

/** A client's `pacman -Sy` through the proxy at `url`: the cached database is the new one afterwards. */
async function syncDatabase(url: string): Promise<void> {
  const response = await fetch(`${url}/${FOLDER}/flexotest.db`);
  assertEquals(response.status, 200);
  await response.body?.cancel();
}

/** Every file and folder below `dir` with its size and modification time, to tell that nothing changed. */
async function cacheListing(dir: string): Promise<string[]> {
  const listing: string[] = [];
  const walk = async (path: string) => {
    for await (const entry of Deno.readDir(path)) {
      const child = join(path, entry.name);
      const info = await Deno.lstat(child);
      listing.push(`${child} ${info.size} ${info.mtime?.getTime()}`);
      if (entry.isDirectory) await walk(child);
    }
  };
  await walk(dir);
  return listing.sort();
}

Deno.test("flexo prefetch asks the running proxy: --dry-run lists what it would fetch and fetches nothing, then a pass fetches it once", async () => {
  await using origin = await startPrefetchOrigin();
  const port = freePort();
  const config = await configFor(origin, port);
  const proxy = await clientFetchedTool(config);
  try {
    await publish(origin.repo);
    await syncDatabase(proxy.url);
    const size = (await Deno.stat(join(origin.repo.osDir, TOOL_NEW))).size;
    const proxyLine = `Prefetch ran in the proxy at http://127.0.0.1:${port}/prefetch.`;

    const asked = origin.mirror.requests.length;
    const dry = await prefetchCommand(config, ["--dry-run"]);
    assertEquals(dry.code, 0, dry.stderr);
    assertEquals(dry.lines, [
      proxyLine,
      `database ${FOLDER}/flexotest.db: would revalidate`,
      `would fetch ${FOLDER}/${TOOL_NEW} (${size} bytes)`,
      `Would fetch 1 file(s), ${size} bytes.`,
      DRY_RUN_NOTE,
    ]);
    assertEquals(origin.mirror.requests.length, asked, "a dry run asks no mirror, not even for a database");
    assertEquals(origin.mirror.countRequests(OTHER_NEW), 0);
    assert(!(await origin.cached(TOOL_NEW)));

    const run = await prefetchCommand(config);
    assertEquals(run.code, 0, run.stderr);
    assertEquals(run.lines, [
      proxyLine,
      `database ${FOLDER}/flexotest.db: not modified`,
      `fetched ${FOLDER}/${TOOL_NEW} (${size} bytes)`,
      `Fetched 1 file(s), ${size} bytes.`,
    ]);
    assert(await origin.cached(TOOL_NEW), "tool 0.10-1 is in the proxy's cache");
    assertEquals(origin.mirror.countRequests(TOOL_NEW, { method: "GET" }), 1);

    // The proxy's client gets it from the cache; a second pass has nothing left to fetch.
    const hit = await fetch(`${proxy.url}/${FOLDER}/${TOOL_NEW}`);
    assertEquals([hit.status, (await hit.bytes()).length], [200, size]);
    const again = await prefetchCommand(config);
    assertEquals(again.code, 0, again.stderr);
    assertEquals(again.lines.at(-1), "Fetched 0 file(s), 0 bytes.");
    assertEquals(origin.mirror.countRequests(TOOL_NEW, { method: "GET" }), 1);
    assertEquals(origin.mirror.countRequests(OTHER_NEW), 0);
  } finally {
    await proxy.stop();
  }
});

Deno.test("flexo prefetch with no proxy running runs the pass itself on the cache: --dry-run fetches nothing, then the pass fetches", async () => {
  await using origin = await startPrefetchOrigin();
  const config = await configFor(origin, freePort());
  const proxy = await clientFetchedTool(config);
  // The proxy records the client's fetch in the cache directory, for whoever runs the next pass.
  await waitFor("the usage record", async () => {
    const text = await Deno.readTextFile(join(origin.cacheDir, ".flexo", "package_usage.json")).catch(() =>
      ""
    );
    return text.includes('"tool"');
  });
  await publish(origin.repo);
  await syncDatabase(proxy.url);
  assertEquals((await proxy.stop()).code, 0);
  const size = (await Deno.stat(join(origin.repo.osDir, TOOL_NEW))).size;

  const before = await cacheListing(origin.cacheDir);
  const asked = origin.mirror.requests.length;
  const dry = await prefetchCommand(config, ["--dry-run"]);
  assertEquals(dry.code, 0, dry.stderr);
  assertEquals(dry.lines, [
    "Prefetch ran here.",
    `database ${FOLDER}/flexotest.db: would revalidate`,
    `would fetch ${FOLDER}/${TOOL_NEW} (${size} bytes)`,
    `Would fetch 1 file(s), ${size} bytes.`,
    DRY_RUN_NOTE,
  ]);
  assertEquals(origin.mirror.requests.length, asked, "a dry run asks no mirror, not even for a database");
  assertEquals(await cacheListing(origin.cacheDir), before, "a dry run writes nothing in the cache");

  const run = await prefetchCommand(config);
  assertEquals(run.code, 0, run.stderr);
  assertEquals(run.lines[0], "Prefetch ran here.");
  assert(run.lines.includes(`fetched ${FOLDER}/${TOOL_NEW} (${size} bytes)`), run.stdout);
  assert(run.lines.includes(`Fetched 1 file(s), ${size} bytes.`), run.stdout);
  assert(await origin.cached(TOOL_NEW), "tool 0.10-1 is cached");
  assertEquals(origin.mirror.countRequests(TOOL_NEW, { method: "GET" }), 1);
  assertEquals(origin.mirror.countRequests(OTHER_NEW), 0);
});

Deno.test("describePrefetch() says why a pass may find nothing when [prefetch] is not enabled", () => {
  const report = { dryRun: true, startedAt: 0, finishedAt: 0, databases: [], files: [], bytes: 0 };
  const off = describePrefetch({ ranIn: "here", report }, { enabled: false });
  assertEquals(off.slice(0, 2), ["Prefetch ran here.", "Would fetch 0 file(s), 0 bytes."]);
  assert(off[2].startsWith("Note: [prefetch] enabled is false"), off[2]);
  assertEquals(describePrefetch({ ranIn: "here", report }, { enabled: true }).length, 2);
});

Deno.test("prefetchOnce() does not run a pass on a cache directory that a proxy it cannot reach serves", async () => {
  await withTempDir(async (dir) => {
    const cacheDir = join(dir, "cache");
    await Deno.mkdir(cacheDir);
    // A proxy serves the directory, but not on the address of this configuration (another --port, --listen).
    const proxy = lockCacheDirectory(cacheDir, 4242);
    try {
      const config = testConfig(cacheDir, ["http://127.0.0.1:9/"], { port: freePort() });
      const refused = () => Promise.reject(new TypeError("connection refused"));
      const error = await assertRejects(() => prefetchOnce(config, { dryRun: false, fetch: refused }), Error);
      assert(error.message.includes("process 4242"), error.message);
      // A dry run fetches nothing, and needs no lock.
      const dry = await prefetchOnce(config, { dryRun: true, fetch: refused });
      assertEquals(dry.ranIn, "here");
    } finally {
      proxy.release();
    }
  });
});
