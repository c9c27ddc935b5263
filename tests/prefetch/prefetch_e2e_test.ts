/**
 * Prefetch end to end: the real pacman client (or plain package requests, as a pacman 6.1 CacheServer client
 * sends) through flexo in front of a local origin that publishes new versions.
 */

import { join } from "node:path";
import { createApp, type FlexoApp } from "../../src/app/app.ts";
import { startServer } from "../../src/server/server.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { type FakeMirror, startFakeMirror } from "../helpers/fake_mirror.ts";
import { addPackages, assertToolsAvailable, makeRepo, type RepoInfo } from "../helpers/make_repo.ts";
import { makePacmanRoot, runPacman } from "../helpers/pacman.ts";
import { testConfig } from "../helpers/test_app.ts";
import { waitFor } from "../helpers/wait.ts";

await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd"]);

const TOOL_NEW = "tool-0.10-1-x86_64.pkg.tar.zst";
const OTHER_NEW = "other-1.1-1-x86_64.pkg.tar.zst";

interface Setup {
  url: string;
  app: FlexoApp;
  mirror: FakeMirror;
  repo: RepoInfo;
  timers: FakeTimers;
  cacheDir: string;
}

async function withSetup(prefetch: Record<string, unknown>, fn: (s: Setup) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-prefetch-" });
  const cacheDir = join(dir, "cache");
  await Deno.mkdir(cacheDir);
  try {
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: "flexotest",
      packages: [{ name: "tool", version: "0.9-1", size: 2000 }, {
        name: "other",
        version: "1.0-1",
        size: 2000,
      }],
    });
    await using mirror = await startFakeMirror(join(dir, "mirror"));
    const timers = new FakeTimers();
    const app = createApp(testConfig(cacheDir, [mirror.url], { prefetch: { enabled: true, ...prefetch } }), {
      prefetchTimers: { setTimer: timers.setTimer, clearTimer: timers.clearTimer },
    });
    const server = startServer(app, { hostnames: ["127.0.0.1"], port: 0 });
    try {
      await app.prefetcher.start();
      await fn({ url: `http://127.0.0.1:${server.addresses[0].port}`, app, mirror, repo, timers, cacheDir });
    } finally {
      app.prefetcher.stop();
      await app.downloads.idle();
      await server.shutdown({ graceMs: 1000 });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The origin publishes tool 0.10-1 and other 1.1-1. */
function publish(repo: RepoInfo, toolSize = 2000): Promise<RepoInfo> {
  return addPackages(repo, [
    { name: "tool", version: "0.10-1", size: toolSize },
    { name: "other", version: "1.1-1", size: 2000 },
  ]);
}

const cached = (s: Setup, file: string) =>
  Deno.stat(join(s.cacheDir, "flexotest", "os", "x86_64", file)).then(() => true, () => false);

Deno.test("prefetch: a new version of a package a pacman client fetched is cached on the interval, the next -Syw is a hit, unused packages are not fetched", async () => {
  await withSetup({ interval: "3s" }, async (s) => {
    await using root = await makePacmanRoot({ serverUrl: `${s.url}/$repo/os/$arch`, repos: ["flexotest"] });
    const first = await runPacman(root, ["-Syw", "tool"]);
    assertEquals(first.code, 0, first.stderr);
    await publish(s.repo);
    assertEquals(s.timers.pending, [3000]);
    s.timers.advance(3000);
    await waitFor("the first prefetch run", () => s.app.prefetcher.status().runs === 1, 20_000);
    assert(await cached(s, TOOL_NEW), "tool 0.10-1 is cached");
    assertEquals(s.app.prefetcher.status().lastFetched.includes(`flexotest/os/x86_64/${TOOL_NEW}`), true);
    const second = await runPacman(root, ["-Syw", "tool"]);
    assertEquals(second.code, 0, second.stderr);
    assertEquals(s.mirror.countRequests(TOOL_NEW, { method: "GET" }), 1);
    assertEquals(s.mirror.countRequests(OTHER_NEW), 0);
    assert(!(await cached(s, OTHER_NEW)), "other 1.1-1 is not cached");
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
      `flexotest/os/x86_64/${TOOL_NEW}`,
      "over_budget",
    ]]);
    assertEquals(s.mirror.countRequests(TOOL_NEW), 0);
    assert(!(await cached(s, TOOL_NEW)));
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
    const response = await fetch(`${s.url}/flexotest/os/x86_64/${TOOL_NEW}`);
    assertEquals(response.status, 200);
    assertEquals(
      (await response.bytes()).length,
      (await Deno.stat(join(s.repo.osDir, TOOL_NEW))).size,
    );
    await run;
    assertEquals(s.mirror.countRequests(TOOL_NEW, { method: "GET" }), 1);
  });
});

Deno.test("prefetch: a CacheServer-only client (package requests, no database requests) gets its updates prefetched", async () => {
  await withSetup({}, async (s) => {
    const old = await fetch(`${s.url}/flexotest/os/x86_64/tool-0.9-1-x86_64.pkg.tar.zst`);
    assertEquals(old.status, 200);
    await old.body?.cancel();
    await publish(s.repo);
    assertEquals(s.mirror.countRequests("flexotest.db"), 0);
    const report = await s.app.prefetcher.run();
    assertEquals(report.databases.map((d) => d.path), ["flexotest/os/x86_64/flexotest.db"]);
    assert(await cached(s, TOOL_NEW), "tool 0.10-1 is cached");
    assert(!(await cached(s, OTHER_NEW)));
    assertEquals(s.mirror.countRequests(TOOL_NEW, { method: "GET" }), 1);
  });
});

Deno.test("prefetch: /status and /metrics show runs, files, bytes and the next run", async () => {
  await withSetup({ interval: "3s" }, async (s) => {
    await (await fetch(`${s.url}/flexotest/os/x86_64/tool-0.9-1-x86_64.pkg.tar.zst`)).body?.cancel();
    await publish(s.repo);
    const report = await s.app.prefetcher.run();
    const status = await (await fetch(`${s.url}/status`)).json();
    assertEquals(status.prefetch.runs, 1);
    assertEquals(status.prefetch.bytes, report.bytes);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert(metrics.includes("flexo_prefetch_runs_total 1"), metrics);
    assert(metrics.includes(`flexo_prefetch_bytes_total ${report.bytes}`), metrics);
  });
});
