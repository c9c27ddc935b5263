/**
 * The watch of the cache directory (cache_watch.ts): changes by another process have the cache counted again
 * once the directory is quiet; the proxy's own changes and downloads in progress do not.
 */
import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { CacheUsage } from "../../src/cache/cache_usage.ts";
import { watchCacheChanges } from "../../src/cache/cache_watch.ts";
import { FakeTimers } from "../helpers/fake_timers.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

/** A watch whose events the test sends. */
function fakeWatch() {
  const queue: Deno.FsEvent[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  return {
    send(kind: Deno.FsEvent["kind"], ...paths: string[]) {
      queue.push({ kind, paths });
      wake?.();
    },
    close() {
      closed = true;
      wake?.();
    },
    async *[Symbol.asyncIterator](): AsyncGenerator<Deno.FsEvent> {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (closed) return;
        await new Promise<void>((resolve) => wake = resolve);
        wake = undefined;
      }
    },
  };
}

type FakeWatch = ReturnType<typeof fakeWatch>;

/** Makes a fake watch per call of the watch, and keeps what each was asked to watch. */
function fakeWatches() {
  const made: { paths: string[]; recursive: boolean; watch: FakeWatch; closed: () => boolean }[] = [];
  return {
    made,
    watch: (paths: string[], { recursive }: { recursive: boolean }) => {
      const watch = fakeWatch();
      let closed = false;
      const close = watch.close;
      watch.close = () => {
        closed = true;
        close();
      };
      made.push({ paths, recursive, watch, closed: () => closed });
      return watch;
    },
    /** The watch of the top-level folders made last. */
    tree: () => made.findLast((one) => one.recursive)!.watch,
  };
}

/** Lets the watch's loop take the events sent so far. */
async function delivered(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/**
 * A started count of `dir` whose rescans are counted (and run only when `rescanRuns`), with fake timers and
 * watches for {@linkcode watchCacheChanges}.
 */
async function watchedCache(dir: string, options: { rescanRuns?: boolean } = {}) {
  const usage = new CacheUsage(dir);
  await usage.start();
  const counted = { rescans: 0 };
  const rescan = usage.rescan.bind(usage);
  usage.rescan = () => (counted.rescans++, options.rescanRuns ? rescan() : Promise.resolve());
  return { usage, counted, timers: new FakeTimers(), watches: fakeWatches() };
}

Deno.test("watchCacheChanges() counts the cache again after another process's change, once it is quiet", async () => {
  await withTempDir(async (dir) => {
    const { usage, counted, timers, watches } = await watchedCache(dir, { rescanRuns: true });
    const pkg = join(dir, "extra/os/x86_64/a-1-1-x86_64.pkg.tar.zst");
    await Deno.mkdir(join(dir, "extra/os/x86_64"), { recursive: true });
    await Deno.writeFile(pkg, new Uint8Array(700));
    const watching = watchCacheChanges(usage, { ...timers.deps, watch: watches.watch, quietMs: 2_000 });
    const watch = watches.tree();
    try {
      watch.send("create", pkg);
      await delivered();
      timers.advance(1_500);
      watch.send("modify", pkg);
      await delivered();
      timers.advance(1_500);
      assertEquals(counted.rescans, 0, "not while changes keep coming");
      timers.advance(500);
      assertEquals(counted.rescans, 1);
      await usage.rescan();
      assertEquals(usage.snapshot(), { bytes: 700, files: 1, complete: true });
    } finally {
      watching.stop();
      await watching.ended;
    }
  });
});

Deno.test("watchCacheChanges() leaves the proxy's own changes, downloads in progress and reads alone", async () => {
  await withTempDir(async (dir) => {
    const { usage, counted, timers, watches } = await watchedCache(dir);
    await Deno.mkdir(join(dir, "core"));
    const watching = watchCacheChanges(usage, { ...timers.deps, watch: watches.watch, quietMs: 2_000 });
    const watch = watches.tree();
    try {
      const own = join(dir, "core/os/x86_64/b-1-1-x86_64.pkg.tar.zst");
      usage.added(10, { path: own });
      watch.send("rename", join(dir, ".partial/core/os/x86_64/b-1-1-x86_64.pkg.tar.zst"), own);
      watch.send("modify", join(dir, ".partial/extra/os/x86_64/c-1-1-x86_64.pkg.tar.zst"));
      watch.send("create", join(dir, ".flexo/package_usage.json"));
      watch.send("access", join(dir, "core/os/x86_64/other-1-1-x86_64.pkg.tar.zst"));
      await delivered();
      timers.advance(10_000);
      assertEquals(counted.rescans, 0);
      assertEquals(timers.pending, [], "nothing left to do");
    } finally {
      watching.stop();
      await watching.ended;
    }
  });
});

Deno.test("watchCacheChanges() sets one timer per quiet period, however many changes come in it", async () => {
  await withTempDir(async (dir) => {
    const { usage, counted, timers, watches } = await watchedCache(dir);
    await Deno.mkdir(join(dir, "core"));
    let set = 0;
    let cleared = 0;
    const deps = {
      ...timers.deps,
      setTimer: (callback: () => void, ms: number) => (set++, timers.setTimer(callback, ms)),
      clearTimer: (timer: unknown) => (cleared++, timers.clearTimer(timer)),
    };
    const watching = watchCacheChanges(usage, { ...deps, watch: watches.watch, quietMs: 2_000 });
    const watch = watches.tree();
    try {
      for (let i = 0; i < 50; i++) {
        watch.send("create", join(dir, `core/os/x86_64/p${i}-1-1-x86_64.pkg.tar.zst`));
        await delivered();
        timers.advance(100);
      }
      // 50 changes over 5 s: the timer was set at 0 and, finding the directory busy 100 ms before, again at
      // 2,000 and 3,900 ms; never cleared.
      assertEquals(
        [set, cleared, counted.rescans],
        [3, 0, 0],
        "one timer per quiet time, not one per change",
      );
      // At 5,800 ms the last change (4,900) is 900 ms old: once more for the 1,100 left.
      timers.advance(1_899);
      assertEquals(counted.rescans, 0);
      timers.advance(1);
      assertEquals([set, counted.rescans], [4, 1]);
    } finally {
      watching.stop();
      await watching.ended;
    }
  });
});

Deno.test("watchCacheChanges() reports a watch that cannot start and leaves the counts to the proxy", async () => {
  const usage = new CacheUsage("/nonexistent-flexo-cache");
  const errors: string[] = [];
  const watching = watchCacheChanges(usage, {
    watch: () => {
      throw new Error("inotify watch limit reached");
    },
    onError: (error) => errors.push(error.message),
  });
  await watching.ended;
  assertEquals(errors, ["inotify watch limit reached"]);
});

Deno.test("watchCacheChanges() watches the root's entries and the top-level folders below, never the dot folders, and a new folder once it appears", async () => {
  await withTempDir(async (dir) => {
    for (const name of ["core", ".partial", ".flexo"]) await Deno.mkdir(join(dir, name));
    const { usage, counted, timers, watches } = await watchedCache(dir);
    const watching = watchCacheChanges(usage, { ...timers.deps, watch: watches.watch, quietMs: 2_000 });
    try {
      const asked = () => watches.made.map(({ paths, recursive }) => ({ paths, recursive }));
      assertEquals(asked(), [
        { paths: [dir], recursive: false },
        { paths: [join(dir, "core")], recursive: true },
      ]);
      // A download's own files make no events to wake anyone; a new repository's folder is watched too.
      await Deno.mkdir(join(dir, "extra"));
      watches.made[0].watch.send("create", join(dir, "extra"));
      await delivered();
      assertEquals(asked().slice(2), [{ paths: [join(dir, "core"), join(dir, "extra")], recursive: true }]);
      assert(watches.made[1].closed(), "the watch of the folders before is closed");
      watches.tree().send("create", join(dir, "extra/os/x86_64/x-1-1-x86_64.pkg.tar.zst"));
      await delivered();
      timers.advance(2_000);
      assertEquals(counted.rescans, 1, "a new folder and what is in it count as changes");
    } finally {
      watching.stop();
      await watching.ended;
    }
    assert(watches.made.every(({ closed }) => closed()), "stop() closes every watch");
  });
});

Deno.test("watchCacheChanges() leaves the events below the top-level folders that reach the root's watch to the folders' watch", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(join(dir, "core"));
    const { usage, counted, timers, watches } = await watchedCache(dir);
    let listed = 0;
    const folders = (root: string) => (listed++, [...Deno.readDirSync(root)].map((entry) => entry.name));
    const watching = watchCacheChanges(usage, {
      ...timers.deps,
      watch: watches.watch,
      folders,
      quietMs: 2_000,
    });
    try {
      assertEquals(listed, 1);
      // Deno gives a directory's watch the events of the watches below it: a commit below core/ reaches both.
      const deep = join(dir, "core/os/x86_64/x-1-1-x86_64.pkg.tar.zst");
      for (const watch of [watches.made[0].watch, watches.tree()]) {
        watch.send("remove", `${deep}.part`);
        watch.send("rename", `${deep}.part`, deep);
      }
      await delivered();
      assertEquals([listed, watches.made.length], [1, 2], "the folders are not listed again");
      timers.advance(2_000);
      assertEquals(counted.rescans, 1, "the change is counted once, from the folders' watch");
      // A new top-level folder still has them listed and watched.
      await Deno.mkdir(join(dir, "extra"));
      watches.made[0].watch.send("create", join(dir, "extra"));
      await delivered();
      assertEquals([listed, watches.made.length], [2, 3]);
    } finally {
      watching.stop();
      await watching.ended;
    }
  });
});
