/**
 * Prefetch end to end: the real pacman client (or plain package requests, as a pacman 6.1 CacheServer client
 * sends) through flexo in front of a local origin that publishes new versions.
 */

import { createApp, type FlexoApp } from "../../src/app/app.ts";
import { startServer } from "../../src/server/server.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import type { FakeMirror } from "../helpers/fake_mirror.ts";
import { assertToolsAvailable, type RepoInfo } from "../helpers/make_repo.ts";
import { makePacmanRoot, runPacman } from "../helpers/pacman.ts";
import {
  FOLDER,
  OTHER_NEW,
  publish,
  startPrefetchOrigin,
  TOOL_NEW,
  TOOL_OLD,
} from "../helpers/prefetch_repo.ts";
import { testConfig } from "../helpers/test_app.ts";
import { waitFor } from "../helpers/wait.ts";

await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd"]);

interface Setup {
  url: string;
  app: FlexoApp;
  mirror: FakeMirror;
  repo: RepoInfo;
  timers: FakeTimers;
  /** The clock just before and just after the schedule started. */
  started: [number, number];
  cached(fileName: string): Promise<boolean>;
  cacheDir: string;
}

async function withSetup(
  prefetch: Record<string, unknown>,
  fn: (s: Setup) => Promise<void>,
  config: (mirrorUrl: string) => Record<string, unknown> = () => ({}),
): Promise<void> {
  await using origin = await startPrefetchOrigin();
  const { mirror, repo } = origin;
  const timers = new FakeTimers();
  const app = createApp(
    testConfig(origin.cacheDir, [mirror.url], {
      prefetch: { enabled: true, ...prefetch },
      ...config(mirror.url),
    }),
    {
      prefetchTimers: { setTimer: timers.setTimer, clearTimer: timers.clearTimer },
    },
  );
  const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0 });
  try {
    const before = Date.now();
    await app.prefetcher.start();
    const started: [number, number] = [before, Date.now()];
    const url = `http://127.0.0.1:${server.addresses[0].port}`;
    await fn({ url, app, mirror, repo, timers, started, cached: origin.cached, cacheDir: origin.cacheDir });
  } finally {
    app.prefetcher.stop();
    await app.downloads.idle();
    await server.shutdown({ graceMs: 1000 });
  }
}

Deno.test("prefetch: a new version of a package a pacman client fetched is cached on the interval, the next -Syw is a hit, unused packages are not fetched", async () => {
  await withSetup({ interval: "3s" }, async (s) => {
    await using root = await makePacmanRoot({ serverUrl: `${s.url}/$repo/os/$arch`, repos: ["flexotest"] });
    const first = await runPacman(root, ["-Syw", "tool"]);
    assertEquals(first.code, 0, first.stderr);
    await publish(s.repo);
    assertEquals(s.timers.pending, [3000]);
    s.timers.advance(3000);
    await waitFor("the first prefetch run", () => s.app.prefetcher.status().runs === 1, 20_000);
    assert(await s.cached(TOOL_NEW), "tool 0.10-1 is cached");
    assertEquals(s.app.prefetcher.status().lastFetched.includes(`${FOLDER}/${TOOL_NEW}`), true);
    const second = await runPacman(root, ["-Syw", "tool"]);
    assertEquals(second.code, 0, second.stderr);
    assertEquals(s.mirror.countRequests(TOOL_NEW, { method: "GET" }), 1);
    assertEquals(s.mirror.countRequests(OTHER_NEW), 0);
    assert(!(await s.cached(OTHER_NEW)), "other 1.1-1 is not cached");
    assertEquals(s.timers.pending, [3000], "the next run is scheduled");
  });
});

Deno.test("prefetch: the byte budget stops a run", async () => {
  await withSetup({ max_bytes_per_run: 1000 }, async (s) => {
    await using root = await makePacmanRoot({ serverUrl: `${s.url}/$repo/os/$arch`, repos: ["flexotest"] });
    assertEquals((await runPacman(root, ["-Syw", "tool"])).code, 0);
    await publish(s.repo);
    const report = await s.app.prefetcher.run();
    assertEquals(report.files.map((f) => [f.path, f.outcome]), [[
      `${FOLDER}/${TOOL_NEW}`,
      "over_budget",
    ]]);
    assertEquals(s.mirror.countRequests(TOOL_NEW), 0);
    assert(!(await s.cached(TOOL_NEW)));
  });
});

Deno.test("prefetch: a client asking for a package while prefetch downloads it shares that download", async () => {
  await withSetup({}, async (s) => {
    await using root = await makePacmanRoot({ serverUrl: `${s.url}/$repo/os/$arch`, repos: ["flexotest"] });
    assertEquals((await runPacman(root, ["-Syw", "tool"])).code, 0);
    await publish(s.repo, 300_000);
    s.mirror.faults = { match: TOOL_NEW, bytesPerSecond: 200_000 };
    const run = s.app.prefetcher.run();
    await waitFor(
      "prefetch downloading tool",
      () => s.app.downloads.list().some((d) => d.finalPath.endsWith(TOOL_NEW)),
    );
    const response = await fetch(`${s.url}/${FOLDER}/${TOOL_NEW}`);
    assertEquals(response.status, 200);
    assertEquals(
      (await response.bytes()).length,
      (await Deno.stat(`${s.repo.osDir}/${TOOL_NEW}`)).size,
    );
    await run;
    assertEquals(s.mirror.countRequests(TOOL_NEW, { method: "GET" }), 1);
  });
});

Deno.test("prefetch: a CacheServer-only client (package requests, no database requests) gets its updates prefetched", async () => {
  await withSetup({}, async (s) => {
    const old = await fetch(`${s.url}/${FOLDER}/${TOOL_OLD}`);
    assertEquals(old.status, 200);
    await old.body?.cancel();
    await publish(s.repo);
    assertEquals(s.mirror.countRequests("flexotest.db"), 0);
    const report = await s.app.prefetcher.run();
    assertEquals(report.databases.map((d) => d.path), [`${FOLDER}/flexotest.db`]);
    assert(await s.cached(TOOL_NEW), "tool 0.10-1 is cached");
    assert(!(await s.cached(OTHER_NEW)));
    assertEquals(s.mirror.countRequests(TOOL_NEW, { method: "GET" }), 1);
  });
});

Deno.test("prefetch: /status and /metrics show runs, files, bytes and the next run", async () => {
  await withSetup({ interval: "3s" }, async (s) => {
    await (await fetch(`${s.url}/${FOLDER}/${TOOL_OLD}`)).body?.cancel();
    await publish(s.repo);
    const report = await s.app.prefetcher.run();
    const status = await (await fetch(`${s.url}/status`)).json();
    assert(report.bytes > 0);
    assertEquals(status.prefetch, {
      enabled: true,
      running: false,
      runs: 1,
      files: 1,
      bytes: report.bytes,
      lastRunAt: report.finishedAt,
      lastFetched: [`${FOLDER}/${TOOL_NEW}`],
      lastFetchedCount: 1,
      nextRunAt: status.prefetch.nextRunAt,
    });
    // Set by start(), before the run: a run by hand leaves the schedule alone.
    assert(
      status.prefetch.nextRunAt >= s.started[0] + 3000 && status.prefetch.nextRunAt <= s.started[1] + 3000,
    );
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert(metrics.includes("flexo_prefetch_runs_total 1"), metrics);
    assert(metrics.includes(`flexo_prefetch_bytes_total ${report.bytes}`), metrics);
  });
});

Deno.test("prefetch: a custom repository's CacheServer-only client gets its updates prefetched from the custom repository's mirror", async () => {
  // The custom repository is the origin's folder again, laid out as `[[custom_repo]]` expects ($repo/$arch).
  const custom = (mirrorUrl: string) => ({
    custom_repo: [{ name: "mine", url: `${mirrorUrl}custom` }],
    mirrors_predefined: ["http://127.0.0.1:9/"], // the official mirrors are down: only the custom one serves
  });
  await withSetup({}, async (s) => {
    await Deno.mkdir(`${s.mirror.rootDir}/custom/flexotest`, { recursive: true });
    await Deno.symlink(s.repo.osDir, `${s.mirror.rootDir}/custom/flexotest/x86_64`);
    const folder = "custom_repo/mine/flexotest/x86_64";
    const old = await fetch(`${s.url}/${folder}/${TOOL_OLD}`);
    assertEquals(old.status, 200);
    await old.body?.cancel();
    await publish(s.repo);
    const report = await s.app.prefetcher.run();
    assertEquals(report.databases.map((d) => [d.path, d.outcome]), [[`${folder}/flexotest.db`, "updated"]]);
    assertEquals(report.files.map((f) => [f.path, f.outcome]), [[`${folder}/${TOOL_NEW}`, "fetched"]]);
    assertEquals(s.mirror.countRequests(`/custom/flexotest/x86_64/${TOOL_NEW}`, { method: "GET" }), 1);
    assertEquals((await Deno.stat(`${s.cacheDir}/${folder}/${TOOL_NEW}`)).isFile, true);
    assertEquals(s.mirror.countRequests(OTHER_NEW), 0);
  }, custom);
});
