/**
 * runPrefetch() on a clock the test sets: which packages count as used (`unaccessed_days`, counted from a
 * client's fetch and never from a prefetch's own download). The cache, the package index and the downloads
 * are small stand-ins; the usage record is the real one.
 */

import { join } from "node:path";
import type { RequestTarget } from "../../src/repo/request_path.ts";
import { PackageUsage, USAGE_FILE } from "../../src/prefetch/package_usage.ts";
import { PREFETCH_FREE_RESERVE, type PrefetchDeps, runPrefetch } from "../../src/prefetch/prefetch_run.ts";
import type { PackageEntry } from "../../src/repo/repo_db.ts";
import { CacheStorageError } from "../../src/download/file_writes.ts";
import { HttpError } from "../../src/http/http_error.ts";
import { assertEquals } from "../helpers/assert.ts";
import { captureLog } from "../helpers/log_capture.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { waitFor } from "../helpers/wait.ts";

const DAY = 86_400_000;
const FOLDER = "core/os/x86_64";
const LIMITS = { unaccessed_days: 30, max_bytes_per_run: 1_000_000, max_parallel: 1 };

const entry = (version: string): PackageEntry => ({
  name: "tool",
  version,
  fileName: `tool-${version}-x86_64.pkg.tar.zst`,
  compressedSize: 100,
  sha256: "0".repeat(64),
  signatureSize: undefined,
  signatureSha256: undefined,
});

/** A cache that holds what the stand-in downloads "fetched"; `clock.now` is the time of every part. */
async function standIns(
  dir: string,
  clock: { now: number },
  entries: PackageEntry[],
  gate: (path: string) => Promise<void> = () => Promise.resolve(),
) {
  const cached = new Set<string>();
  const obtained: string[] = [];
  const body = join(dir, "body");
  await Deno.writeFile(body, new Uint8Array(100));
  const usage = new PackageUsage(dir, { now: () => clock.now });
  const deps = {
    store: {
      statComplete: (segments: string[]) => cached.has(segments.join("/")) ? {} : undefined,
      freeBytes: () => undefined,
    },
    downloads: {
      list: () => [],
      obtain(target: RequestTarget) {
        const path = target.cacheSegments.join("/");
        obtained.push(path);
        // Databases are not modified and no package has a signature: only packages are fetched.
        const state = target.kind === "package"
          ? "complete"
          : target.kind === "database"
          ? "not_modified"
          : "failed";
        if (state === "complete") cached.add(path);
        return { finished: state === "complete" ? gate(path) : Promise.resolve(), state, finalPath: body };
      },
    },
    packageIndex: {
      folders: () => [FOLDER],
      databasesIn: () => [join(dir, "core.db")],
      entriesIn: () => entries,
      idle: () => Promise.resolve(),
    },
    usage,
    customRepoNames: new Set<string>(),
    now: () => clock.now,
  } as unknown as PrefetchDeps;
  return { deps, usage, obtained };
}

Deno.test("runPrefetch() fetches for a package a client fetched up to unaccessed_days ago, not a moment later", async () => {
  await withTempDir(async (dir) => {
    const t0 = 1000 * DAY;
    const clock = { now: t0 };
    const entries = [entry("0.9-1"), entry("0.10-1")];
    const { deps, usage, obtained } = await standIns(dir, clock, entries);
    usage.recordFetch(FOLDER, "tool");

    clock.now = t0 + 29 * DAY;
    const report = await runPrefetch(deps, LIMITS);
    assertEquals(report.files.map((f) => [f.path, f.outcome]), [[
      `${FOLDER}/tool-0.10-1-x86_64.pkg.tar.zst`,
      "fetched",
    ]]);
    // The prefetch's own download is no client fetch: the record still says t0.
    assertEquals(usage.fetchedSince(0), [{ folder: FOLDER, name: "tool", lastFetched: t0 }]);

    entries.push(entry("0.11-1"));
    clock.now = t0 + 30 * DAY;
    const atLimit = await runPrefetch(deps, LIMITS, { dryRun: true });
    assertEquals(
      atLimit.files.map((f) => f.outcome),
      ["would_fetch"],
      "30 days to the millisecond: still used",
    );
    clock.now = t0 + 30 * DAY + 1;
    const past = await runPrefetch(deps, LIMITS);
    assertEquals(past.files, [], "unused for longer than unaccessed_days: not prefetched");
    assertEquals(obtained.filter((path) => path.includes("0.11-1")), []);
    await usage.flushed();
  });
});

Deno.test("runPrefetch() counts unaccessed_days from the client's latest fetch", async () => {
  await withTempDir(async (dir) => {
    const t0 = 1000 * DAY;
    const clock = { now: t0 };
    const entries = [entry("0.9-1"), entry("0.10-1")];
    const { deps, usage } = await standIns(dir, clock, entries);
    usage.recordFetch(FOLDER, "tool");
    clock.now = t0 + 20 * DAY;
    usage.recordFetch(FOLDER, "tool"); // the client fetched it again
    clock.now = t0 + 45 * DAY;
    const report = await runPrefetch(deps, LIMITS, { dryRun: true });
    assertEquals(report.files.map((f) => f.outcome), ["would_fetch"]);
    await usage.flushed();
  });
});

Deno.test("runPrefetch() runs at most max_parallel downloads at a time", async () => {
  await withTempDir(async (dir) => {
    const clock = { now: 1000 * DAY };
    const names = ["a", "b", "c", "d", "e"];
    const entries = names.map((name) => ({
      ...entry("1.0-1"),
      name,
      fileName: `${name}-1.0-1-any.pkg.tar.zst`,
    }));
    let running = 0;
    let most = 0;
    const waiting: (() => void)[] = [];
    const gate = () => {
      most = Math.max(most, ++running);
      return new Promise<void>((resolve) => waiting.push(() => (running--, resolve())));
    };
    const { deps, usage, obtained } = await standIns(dir, clock, entries, gate);
    for (const name of names) usage.recordFetch(FOLDER, name);
    const run = runPrefetch(deps, { ...LIMITS, max_parallel: 2 });
    let released = 0;
    while (released < names.length) {
      await waitFor("a download to wait", () => waiting.length > 0);
      assertEquals(running <= 2, true, `${running} downloads at once`);
      waiting.shift()!();
      released++;
    }
    const report = await run;
    assertEquals(report.files.filter((f) => f.outcome === "fetched").length, 5);
    assertEquals(most, 2, "two at a time, never more");
    assertEquals(obtained.filter((path) => path.endsWith(".pkg.tar.zst")).length, 5);
    await usage.flushed();
  });
});

Deno.test("runPrefetch() asks for the database named after $repo of a folder no database was synced for, whatever its layout", async () => {
  await withTempDir(async (dir) => {
    const clock = { now: 1000 * DAY };
    const { deps, usage, obtained } = await standIns(dir, clock, []);
    const noDatabases = {
      folders: () => [],
      databasesIn: () => [],
      entriesIn: () => [],
      idle: () => Promise.resolve(),
    } as unknown as PrefetchDeps["packageIndex"];
    const custom = { ...deps, packageIndex: noDatabases, customRepoNames: new Set(["arm", "mine", "arch"]) };
    // CacheServer-only clients: packages were fetched from these folders, no database ever was.
    const folders = {
      "core/os/x86_64": "core.db",
      // Arch Linux ARM, as docs/operations.md sets it up: Server = .../custom_repo/arm/$arch/$repo
      "custom_repo/arm/aarch64/core": "core.db",
      "custom_repo/arm/armv7h/alarm": "alarm.db",
      // Server = .../custom_repo/mine/$repo/$arch
      "custom_repo/mine/flexotest/x86_64": "flexotest.db",
      // a custom repository laid out like the official mirrors: Server = .../custom_repo/arch/$repo/os/$arch
      "custom_repo/arch/extra/os/x86_64": "extra.db",
    };
    for (const folder of Object.keys(folders)) usage.recordFetch(folder, "tool");
    await runPrefetch(custom, LIMITS);
    assertEquals(
      obtained.sort(),
      Object.entries(folders).map(([folder, name]) => `${folder}/${name}`).sort(),
    );
    await usage.flushed();
  });
});

Deno.test("runPrefetch() with dryRun asks no mirror, not even for a database, and saves nothing of the usage record", async () => {
  await withTempDir(async (dir) => {
    const t0 = 1000 * DAY;
    const clock = { now: t0 };
    const { deps, usage, obtained } = await standIns(dir, clock, [entry("0.9-1"), entry("0.10-1")]);
    usage.recordFetch(FOLDER, "tool");
    await usage.flushed();
    const saved = await Deno.readTextFile(join(dir, USAGE_FILE));
    // The clock is set back: a pass would save the fetch's time as now; a dry run leaves the record alone.
    clock.now = t0 - DAY;
    const report = await runPrefetch(deps, LIMITS, { dryRun: true });
    await usage.flushed();
    assertEquals(obtained, [], "no download: neither the database nor a package");
    assertEquals(report.databases, [{ path: `${FOLDER}/core.db`, outcome: "would_revalidate" }]);
    assertEquals(report.files.map((f) => [f.path, f.outcome]), [[
      `${FOLDER}/tool-0.10-1-x86_64.pkg.tar.zst`,
      "would_fetch",
    ]]);
    assertEquals(await Deno.readTextFile(join(dir, USAGE_FILE)), saved);
  });
});

Deno.test("runPrefetch() stops at a full disk instead of asking the mirrors for every other package", async () => {
  await withTempDir(async (dir) => {
    const clock = { now: 1000 * DAY };
    const names = ["a", "b", "c", "d"];
    const entries = names.map((name) => ({
      ...entry("1.0-1"),
      name,
      fileName: `${name}-1.0-1-any.pkg.tar.zst`,
    }));
    const { deps, usage } = await standIns(dir, clock, entries);
    for (const name of names) usage.recordFetch(FOLDER, name);
    await usage.flushed();
    const asked: string[] = [];
    const full = new CacheStorageError(
      "disk_full",
      `disk full: no space left in the cache directory ${dir}`,
      {
        code: "ENOSPC",
      },
    );
    const fullDisk = {
      ...deps,
      downloads: {
        list: () => [],
        obtain(target: RequestTarget) {
          asked.push(target.cacheSegments.join("/"));
          const failed = target.kind === "package";
          return {
            finished: Promise.resolve(),
            state: failed ? "failed" : "not_modified",
            error: failed ? full : undefined,
          };
        },
      },
    } as unknown as PrefetchDeps;
    const report = await runPrefetch(fullDisk, LIMITS);
    assertEquals(asked.filter((path) => path.endsWith(".pkg.tar.zst")), [
      `${FOLDER}/a-1.0-1-any.pkg.tar.zst`,
    ]);
    assertEquals(report.files.map((f) => [f.outcome, f.error]), [["failed", full.message]]);
  });
});

Deno.test("runPrefetch() passes over the folders of a custom repository no longer configured, without a word", async () => {
  await withTempDir(async (dir) => {
    const clock = { now: 1000 * DAY };
    const gone = "custom_repo/gone/x86_64";
    const { deps, usage, obtained } = await standIns(dir, clock, [entry("1.0-1")]);
    usage.recordFetch(gone, "tool");
    await usage.flushed();
    // Its database and files are still cached (and indexed) after `[[custom_repo]] name = "gone"` was removed.
    const removed = {
      ...deps,
      packageIndex: { ...deps.packageIndex, folders: () => [gone] },
    } as unknown as PrefetchDeps;
    const captured = await captureLog("debug");
    let report;
    try {
      report = await runPrefetch(removed, LIMITS);
    } finally {
      await captured.close();
    }
    assertEquals([obtained, report.databases, report.files], [[], [], []]);
    const complaints = captured.text().split("\n").filter((line) => /^<[0-4]>/.test(line));
    assertEquals(complaints, [], "nothing to warn about at every run");
  });
});

Deno.test("runPrefetch() starts no download while a client's download runs, and goes on once it has ended", async () => {
  await withTempDir(async (dir) => {
    const clock = { now: 1000 * DAY };
    const { deps, usage, obtained } = await standIns(dir, clock, [entry("0.10-1")]);
    usage.recordFetch(FOLDER, "tool");
    await usage.flushed();
    // A client's pacman -Syu is downloading from the mirrors.
    const client = Promise.withResolvers<void>();
    const clientDownload = { ended: false, finished: client.promise };
    const busy = {
      ...deps,
      downloads: { ...deps.downloads, list: () => clientDownload.ended ? [] : [clientDownload] },
    } as unknown as PrefetchDeps;
    const run = runPrefetch(busy, LIMITS);
    await waitFor("the database's revalidation", () => obtained.length > 0);
    // A few turns of the event loop: the run must still be waiting.
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setTimeout(resolve, 0));
    assertEquals(obtained, [`${FOLDER}/core.db`], "no package download beside the client's");
    clientDownload.ended = true;
    client.resolve();
    const report = await run;
    assertEquals(report.files.map((f) => [f.path, f.outcome]), [[
      `${FOLDER}/tool-0.10-1-x86_64.pkg.tar.zst`,
      "fetched",
    ]]);
  });
});

Deno.test("runPrefetch() revalidates no database of a folder no client fetched a package from within unaccessed_days", async () => {
  await withTempDir(async (dir) => {
    const t0 = 1000 * DAY;
    const clock = { now: t0 };
    const { deps, usage, obtained } = await standIns(dir, clock, [entry("0.10-1")]);
    usage.recordFetch(FOLDER, "tool");
    await usage.flushed();
    // core.db is cached (a client synced it once), but its packages have not been used for 31 days: a new copy
    // every interval would be mirror traffic for nothing a run fetches.
    clock.now = t0 + 31 * DAY;
    const report = await runPrefetch(deps, LIMITS);
    assertEquals([obtained, report.databases, report.files], [[], [], []]);
  });
});

/** Stand-ins whose package downloads all fail with `error`; `asked` lists the packages asked for. */
async function failingDownloads(dir: string, error: Error) {
  const clock = { now: 1000 * DAY };
  const names = ["a", "b", "c", "d", "e", "f"];
  const entries = names.map((name) => ({
    ...entry("1.0-1"),
    name,
    fileName: `${name}-1.0-1-any.pkg.tar.zst`,
  }));
  const { deps, usage } = await standIns(dir, clock, entries);
  for (const name of names) usage.recordFetch(FOLDER, name);
  await usage.flushed();
  const asked: string[] = [];
  const failing = {
    ...deps,
    downloads: {
      list: () => [],
      obtain(target: RequestTarget) {
        if (target.kind === "package") asked.push(target.fileName);
        const failed = target.kind === "package";
        return {
          finished: Promise.resolve(),
          state: failed ? "failed" : "not_modified",
          error: failed ? error : undefined,
        };
      },
    },
  } as unknown as PrefetchDeps;
  return { deps: failing, asked };
}

Deno.test("runPrefetch() ends after three packages in a row failed at every mirror, and goes on past packages the mirrors do not have", async () => {
  await withTempDir(async (dir) => {
    // The line to the mirrors went down mid-run: each of what may be thousands of packages would try every mirror.
    const down = await failingDownloads(dir, new HttpError(502, "no mirror could be reached"));
    const report = await runPrefetch(down.deps, LIMITS);
    assertEquals(down.asked.length, 3, `asked for ${down.asked.join(", ")}`);
    assertEquals(report.files.map((f) => f.outcome), ["failed", "failed", "failed"]);
  });
  await withTempDir(async (dir) => {
    const missing = await failingDownloads(dir, new HttpError(404, "no mirror has the file"));
    await runPrefetch(missing.deps, LIMITS);
    assertEquals(missing.asked.length, 6, "a 404 says nothing about the other packages");
  });
});

Deno.test("runPrefetch() starts no download that would leave the cache's disk less than PREFETCH_FREE_RESERVE free", async () => {
  await withTempDir(async (dir) => {
    const clock = { now: 1000 * DAY };
    const names = ["a", "b", "c"];
    const entries = names.map((name) => ({
      ...entry("1.0-1"),
      name,
      fileName: `${name}-1.0-1-any.pkg.tar.zst`,
    }));
    const { deps, usage, obtained } = await standIns(dir, clock, entries);
    for (const name of names) usage.recordFetch(FOLDER, name);
    await usage.flushed();
    // Room for one 100-byte package above the reserve, not for two: the rest of the disk is the clients'.
    let free = PREFETCH_FREE_RESERVE + 150;
    const nearlyFull = {
      ...deps,
      store: { ...deps.store, freeBytes: () => free },
      downloads: {
        ...deps.downloads,
        obtain(target: RequestTarget) {
          const download = deps.downloads.obtain(target);
          if (target.kind === "package") free -= 100;
          return download;
        },
      },
    } as unknown as PrefetchDeps;
    const report = await runPrefetch(nearlyFull, LIMITS);
    assertEquals(obtained.filter((path) => path.endsWith(".pkg.tar.zst")), [
      `${FOLDER}/a-1.0-1-any.pkg.tar.zst`,
    ]);
    assertEquals(report.files.map((f) => [f.path, f.outcome]), [
      [`${FOLDER}/a-1.0-1-any.pkg.tar.zst`, "fetched"],
      [`${FOLDER}/b-1.0-1-any.pkg.tar.zst`, "failed"],
    ]);
  });
});

Deno.test("runPrefetch() downloads no version that num_versions_retain would remove next (a repository gone back to an older one)", async () => {
  await withTempDir(async (dir) => {
    const clock = { now: 1000 * DAY };
    // A custom repository's owner reverted tool 2.0-1 to 1.9-1; clients had fetched 2.0-1, which is cached.
    const { deps, usage, obtained } = await standIns(dir, clock, [entry("1.9-1")]);
    usage.recordFetch(FOLDER, "tool");
    await usage.flushed();
    await Deno.mkdir(join(dir, FOLDER), { recursive: true });
    await Deno.writeFile(join(dir, FOLDER, "tool-2.0-1-x86_64.pkg.tar.zst"), new Uint8Array(100));
    const withRoot = (keepVersions: number) =>
      ({ ...deps, store: { ...deps.store, root: dir }, keepVersions }) as unknown as PrefetchDeps;
    // Keeping one version, 1.9-1 would be removed right after its download, and fetched again every run.
    const one = await runPrefetch(withRoot(1), LIMITS);
    assertEquals([one.files, obtained.filter((path) => path.includes("1.9-1"))], [[], []]);
    // Keeping two, it stays: fetched.
    const two = await runPrefetch(withRoot(2), LIMITS);
    assertEquals(two.files.map((f) => [f.path, f.outcome]), [[
      `${FOLDER}/tool-1.9-1-x86_64.pkg.tar.zst`,
      "fetched",
    ]]);
  });
});
