/**
 * Retention applies to prefetched files: with `num_versions_retain = 1`, a prefetched new version counts as a
 * version like any other, so the older one goes, unless a client is reading it. In the proxy (the cleaner wired
 * as main.ts wires it, on fake timers) and in `flexo prefetch` run without a proxy.
 */

import { join } from "node:path";
import { createApp } from "../../src/app/app.ts";
import { Cleaner, cleanupLimitsOf, type CleanupReport, inUseBy } from "../../src/cache/cleanup.ts";
import { USAGE_FILE } from "../../src/prefetch/package_usage.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { runFlexo, tomlString, writeConfig } from "../helpers/flexo_process.ts";
import { assertToolsAvailable } from "../helpers/make_repo.ts";
import { FOLDER, publish, startPrefetchOrigin, TOOL_NEW, TOOL_OLD } from "../helpers/prefetch_repo.ts";
import { testConfig } from "../helpers/test_app.ts";

await assertToolsAvailable(["repo-add", "bsdtar", "zstd"]);

Deno.test("Cleaner keeps num_versions_retain versions with prefetched ones counted, and spares a version a client is reading", async () => {
  await using origin = await startPrefetchOrigin();
  const timers = new FakeTimers();
  const config = testConfig(origin.cacheDir, [origin.mirror.url], {
    num_versions_retain: 1,
    prefetch: { enabled: true },
  });
  const reports: CleanupReport[] = [];
  // As main.ts: every completed download (a prefetch's too) asks the cleaner for a run.
  const app = createApp(config, {
    onDownloadComplete: (download) => cleaner.downloadCompleted(download.file),
  });
  const cleaner = new Cleaner({
    cacheDir: config.cache_directory,
    ...cleanupLimitsOf(config),
    inUse: inUseBy(app),
    store: app.store,
    onReport: (report) => reports.push(report),
    ...timers.deps,
  });
  try {
    const old = await app.fetch(new Request(`http://flexo.test/${FOLDER}/${TOOL_OLD}`));
    assertEquals(old.status, 200);
    await old.body?.cancel();
    await app.downloads.idle();
    timers.advance(5000);
    await cleaner.idle();
    assertEquals(reports.map((r) => r.removedFiles), [0], "one version of tool: nothing to remove");
    await publish(origin.repo);

    // A client is still reading tool 0.9-1 while prefetch brings 0.10-1.
    const oldPath = join(origin.cacheDir, ...FOLDER.split("/"), TOOL_OLD);
    const endRead = app.store.beginRead(oldPath);
    const report = await app.prefetcher.run();
    assertEquals(report.files.map((f) => [f.path, f.outcome]), [[`${FOLDER}/${TOOL_NEW}`, "fetched"]]);
    assertEquals(timers.pending, [5000], "the prefetched download asked for a cleaning run");
    timers.advance(5000);
    await cleaner.idle();
    assertEquals(reports.at(-1)!.removedFiles, 0, "the version being read stays");
    assert(await origin.cached(TOOL_OLD) && await origin.cached(TOOL_NEW));

    endRead();
    await cleaner.runNow();
    assertEquals(reports.at(-1)!.removed.map((r) => r.paths), [[oldPath]]);
    assert(!(await origin.cached(TOOL_OLD)), "the older version is removed once nobody reads it");
    assert(await origin.cached(TOOL_NEW), "the prefetched newest version is kept");
  } finally {
    await cleaner.stop();
    await app.downloads.idle();
  }
});

Deno.test("flexo prefetch run without a proxy applies num_versions_retain to what it fetched", async () => {
  await using origin = await startPrefetchOrigin();
  // The cache as a client left it: tool 0.9-1 downloaded, and the fetch on record.
  const folder = join(origin.cacheDir, ...FOLDER.split("/"));
  await Deno.mkdir(folder, { recursive: true });
  await Deno.copyFile(join(origin.repo.osDir, TOOL_OLD), join(folder, TOOL_OLD));
  await Deno.mkdir(join(origin.cacheDir, ".flexo"));
  await Deno.writeTextFile(
    join(origin.cacheDir, USAGE_FILE),
    JSON.stringify({ version: 1, folders: { [FOLDER]: { tool: Date.now() } } }),
  );
  await publish(origin.repo);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close(); // no proxy answers there
  const config = await writeConfig(
    origin.dir,
    [
      `cache_directory = ${tomlString(origin.cacheDir)}`,
      `port = ${port}`,
      'listen_ip_address = "127.0.0.1"',
      'mirror_selection_method = "predefined"',
      `mirrors_predefined = [${tomlString(origin.mirror.url)}]`,
      "num_versions_retain = 1",
    ].join("\n"),
  );
  const run = await runFlexo(["prefetch", "--config", config], { timeoutMs: 60_000 });
  assertEquals(run.code, 0, run.stderr);
  const lines = run.stdout.trim().split("\n");
  assertEquals(lines[0], "Prefetch ran here.");
  assert(lines.includes(`removed ${join(folder, TOOL_OLD)} (older version)`), run.stdout);
  assert(await origin.cached(TOOL_NEW), "tool 0.10-1 is cached");
  assert(!(await origin.cached(TOOL_OLD)), "tool 0.9-1 is removed");
});
