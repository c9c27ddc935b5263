import assert from "node:assert/strict";
import { type CachedPackageFile, planRetention, planSizeEviction } from "../../src/cache/retention_plan.ts";

const NOTHING_IN_USE = () => false;

/** A cached file at `<folder>/<fileName>`; sizes default to 100 bytes for packages and 1 for signatures. */
function file(
  folder: string,
  fileName: string,
  options: { size?: number; atimeMs?: number } = {},
): CachedPackageFile {
  return {
    path: `/cache/${folder}/${fileName}`,
    fileName,
    size: options.size ?? (fileName.endsWith(".sig") ? 1 : 100),
    atimeMs: options.atimeMs,
  };
}

/** A package file and its signature. */
function signed(folder: string, fileName: string, options: { size?: number; atimeMs?: number } = {}) {
  return [file(folder, fileName, options), file(folder, `${fileName}.sig`)];
}

function paths(...files: CachedPackageFile[][]): string[] {
  return files.flat().map((f) => f.path).sort();
}

Deno.test("planRetention() keeps the newest N versions by pacman's ordering, with epochs and odd versions", () => {
  const oldest = signed("core/os/x86_64", "foo-1.0a-1-x86_64.pkg.tar.zst");
  const old = signed("core/os/x86_64", "foo-1.0-1-x86_64.pkg.tar.zst");
  const middle = signed("core/os/x86_64", "foo-1.0.1-1-x86_64.pkg.tar.zst");
  const newer = signed("core/os/x86_64", "foo-2.0-1-x86_64.pkg.tar.zst");
  const newest = signed("core/os/x86_64", "foo-1:0.1-1-x86_64.pkg.tar.zst"); // the epoch beats 2.0
  const files = [...newer, ...oldest, ...newest, ...middle, ...old];

  const plan = planRetention(files, { keep: 2, inUse: NOTHING_IN_USE });
  assert.deepEqual(plan.remove, paths(oldest, old, middle));
  assert.equal(plan.keepCount, 2);
  assert.equal(plan.freedBytes, 3 * 101);
  assert.deepEqual(plan.versions.map((v) => v.version).sort(), ["1.0-1", "1.0.1-1", "1.0a-1"]);

  assert.deepEqual(
    planRetention(files, { keep: 1, inUse: NOTHING_IN_USE }).remove,
    paths(oldest, old, middle, newer),
  );
  assert.deepEqual(planRetention(files, { keep: 5, inUse: NOTHING_IN_USE }).remove, []);
});

Deno.test("planRetention() orders releases, rc versions and leading zeros like vercmp", () => {
  const files = [
    file("extra", "bar-1.0rc1-1-any.pkg.tar.zst"),
    file("extra", "bar-1.0-2-any.pkg.tar.zst"),
    file("extra", "bar-1.0-10-any.pkg.tar.zst"),
    file("extra", "bar-1.0-1.1-any.pkg.tar.zst"),
    file("extra", "bar-1.0-1-any.pkg.tar.zst"),
  ];
  const plan = planRetention(files, { keep: 2, inUse: NOTHING_IN_USE });
  // newest first: 1.0-10, 1.0-2, 1.0-1.1, 1.0-1, 1.0rc1-1
  assert.deepEqual(plan.remove, [
    "/cache/extra/bar-1.0-1-any.pkg.tar.zst",
    "/cache/extra/bar-1.0-1.1-any.pkg.tar.zst",
    "/cache/extra/bar-1.0rc1-1-any.pkg.tar.zst",
  ]);
});

Deno.test("planRetention() counts versions per repository folder: with keep 1, core and core-testing each keep their newest", () => {
  // One package name in two repositories at two versions: with the versions counted across folders, each
  // download removed the other repository's version, and the next request fetched it again.
  const core = signed("core/os/x86_64", "baz-1.0-1-x86_64.pkg.tar.zst");
  const testing = signed("core-testing/os/x86_64", "baz-1.1-1-x86_64.pkg.tar.zst");
  const custom = signed("custom_repo/mine/x86_64", "baz-0.9-1-x86_64.pkg.tar.zst");
  const plan = planRetention([...core, ...testing, ...custom], { keep: 1, inUse: NOTHING_IN_USE });
  assert.deepEqual(plan.remove, []);
  assert.equal(plan.keepCount, 3);
  // An older version in one folder still goes, and only that folder's.
  const older = signed("core/os/x86_64", "baz-0.8-1-x86_64.pkg.tar.zst");
  const again = planRetention([...core, ...testing, ...custom, ...older], { keep: 1, inUse: NOTHING_IN_USE });
  assert.deepEqual(again.remove, paths(older));
});

Deno.test("planRetention() counts a version with several extensions in one folder once and removes all its copies", () => {
  const v1 = [
    ...signed("testing/os/x86_64", "baz-1.0-1-x86_64.pkg.tar.zst"),
    file("testing/os/x86_64", "baz-1.0-1-x86_64.pkg.tar.xz"), // same version, other extension, no signature
  ];
  const v2 = signed("testing/os/x86_64", "baz-1.1-1-x86_64.pkg.tar.zst");
  const v3 = signed("testing/os/x86_64", "baz-1.2-1-x86_64.pkg.tar.zst");
  const plan = planRetention([...v1, ...v2, ...v3], { keep: 2, inUse: NOTHING_IN_USE });
  assert.deepEqual(plan.remove, paths(v1));
  assert.equal(plan.keepCount, 2);
  assert.equal(plan.versions.length, 1);
  assert.equal(plan.versions[0].bytes, 101 + 100);
});

Deno.test("planRetention() treats each architecture and each package name separately", () => {
  const files = [
    file("a", "qux-1-1-x86_64.pkg.tar.zst"),
    file("a", "qux-2-1-x86_64.pkg.tar.zst"),
    file("b", "qux-1-1-aarch64.pkg.tar.zst"),
    file("c", "qux-1-1-any.pkg.tar.zst"),
    file("a", "qux-git-3-1-x86_64.pkg.tar.zst"), // package "qux-git", not qux 3
    file("a", "lib32-qux-5-1-x86_64.pkg.tar.zst"),
  ];
  const plan = planRetention(files, { keep: 1, inUse: NOTHING_IN_USE });
  assert.deepEqual(plan.remove, ["/cache/a/qux-1-1-x86_64.pkg.tar.zst"]);
  assert.equal(plan.keepCount, 5);
});

Deno.test("planRetention() never removes a version that is in use, nor the signature of one", () => {
  const old = signed("core", "foo-1-1-any.pkg.tar.zst");
  const older = signed("core", "foo-0.9-1-any.pkg.tar.zst");
  const copy = signed("core", "foo-0.9-1-any.pkg.tar.xz"); // the same version with another extension
  const current = signed("core", "foo-2-1-any.pkg.tar.zst");
  const files = [...old, ...older, ...copy, ...current];
  const inUse = new Set([old[0].path, copy[1].path]);

  const plan = planRetention(files, { keep: 1, inUse: (path) => inUse.has(path) });
  // foo-1 is being downloaded; foo-0.9 has a copy whose signature is being read: both stay whole.
  assert.deepEqual(plan.remove, []);
  assert.equal(plan.keepCount, 4);

  inUse.delete(copy[1].path);
  assert.deepEqual(
    planRetention(files, { keep: 1, inUse: (path) => inUse.has(path) }).remove,
    paths(older, copy),
  );
});

Deno.test("planRetention() with keep 0 keeps everything and leaves unparsable files alone", () => {
  const files = [
    file("core", "foo-1-1-any.pkg.tar.zst"),
    file("core", "foo-2-1-any.pkg.tar.zst"),
    file("core", "foo-3-1-any.pkg.tar.zst"),
    file("core", "core.db"),
    file("core", "core.files.sig"),
    file("core", "foo-0.5-1-any.pkg.tar.zst.sig"), // its package is gone
    file("core", "foo-0.1-1-any.pkg.tar.zst.part"),
    file("core", "not-a-package.txt"),
  ];
  const all = planRetention(files, { keep: 0, inUse: NOTHING_IN_USE });
  assert.deepEqual(all.remove, []);
  assert.equal(all.keepCount, 3);
  assert.equal(all.freedBytes, 0);

  const one = planRetention(files, { keep: 1, inUse: NOTHING_IN_USE });
  assert.deepEqual(one.remove, [
    "/cache/core/foo-0.5-1-any.pkg.tar.zst.sig", // older than every kept version: its package will not come
    "/cache/core/foo-1-1-any.pkg.tar.zst",
    "/cache/core/foo-2-1-any.pkg.tar.zst",
  ]);
});

Deno.test("planRetention() removes a stray signature only when its version is older than every kept one", () => {
  const files = [
    file("extra", "bar-2-1-x86_64.pkg.tar.zst"),
    file("extra", "bar-3-1-x86_64.pkg.tar.zst"),
    file("extra", "bar-1-1-x86_64.pkg.tar.zst.sig"), // stray, older than both
    file("extra", "bar-2.5-1-x86_64.pkg.tar.zst.sig"), // stray, between the kept versions
    file("extra", "bar-4-1-x86_64.pkg.tar.zst.sig"), // stray, newer: its package may be on its way
    file("extra", "baz-1-1-x86_64.pkg.tar.zst.sig"), // stray, no version of baz cached at all
    file("extra", "bar-1-1-aarch64.pkg.tar.zst.sig"), // another architecture, nothing cached
  ];
  assert.deepEqual(planRetention(files, { keep: 2, inUse: NOTHING_IN_USE }).remove, [
    "/cache/extra/bar-1-1-x86_64.pkg.tar.zst.sig",
  ]);
  assert.deepEqual(
    planRetention(files, { keep: 3, inUse: NOTHING_IN_USE }).remove,
    [],
    "fewer cached than kept",
  );
  assert.deepEqual(
    planRetention(files, { keep: 2, inUse: (path) => path.endsWith("bar-1-1-x86_64.pkg.tar.zst.sig") })
      .remove,
    [],
    "in use",
  );
  const plan = planRetention(files, { keep: 1, inUse: NOTHING_IN_USE });
  assert.deepEqual(plan.remove, [
    "/cache/extra/bar-1-1-x86_64.pkg.tar.zst.sig",
    "/cache/extra/bar-2-1-x86_64.pkg.tar.zst",
    "/cache/extra/bar-2.5-1-x86_64.pkg.tar.zst.sig",
  ]);
  assert.equal(plan.keepCount, 1);
  assert.equal(plan.freedBytes, 102);
});

Deno.test("planRetention() rejects a keep that is not a whole number of versions", () => {
  for (const keep of [-1, 1.5, Number.NaN]) {
    assert.throws(() => planRetention([], { keep, inUse: NOTHING_IN_USE }), RangeError);
  }
});

Deno.test("planSizeEviction() does nothing while the cache fits", () => {
  const files = [file("core", "foo-1-1-any.pkg.tar.zst"), file("core", "foo-2-1-any.pkg.tar.zst")];
  const plan = planSizeEviction(files, { maxBytes: 200, inUse: NOTHING_IN_USE });
  assert.deepEqual(plan, { remove: [], freedBytes: 0, totalBytes: 200, remainingBytes: 200, versions: [] });
});

Deno.test("planSizeEviction() evicts least recently used older versions first, with their signatures", () => {
  const fooOld = signed("core", "foo-1-1-any.pkg.tar.zst", { atimeMs: 5_000 });
  const fooNew = signed("core", "foo-2-1-any.pkg.tar.zst", { atimeMs: 1_000 }); // newest: spared in round one
  const barOlder = signed("extra", "bar-1:1-1-x86_64.pkg.tar.zst", { atimeMs: 2_000 });
  const barOld = signed("extra", "bar-1:2-1-x86_64.pkg.tar.zst", { atimeMs: 3_000 });
  const barNew = signed("extra", "bar-1:3-1-x86_64.pkg.tar.zst", { atimeMs: 9_000 });
  const stray = file("extra", "README", { size: 50 });
  const files = [...fooOld, ...fooNew, ...barOlder, ...barOld, ...barNew, stray];
  const total = 5 * 101 + 50;

  const plan = planSizeEviction(files, { maxBytes: total - 150, inUse: NOTHING_IN_USE });
  assert.deepEqual(plan.versions.map((v) => `${v.name} ${v.version}`), ["bar 1:1-1", "bar 1:2-1"]);
  assert.deepEqual(plan.remove, paths(barOlder, barOld));
  assert.equal(plan.freedBytes, 202);
  assert.equal(plan.totalBytes, total);
  assert.equal(plan.remainingBytes, total - 202);

  // When every older version is gone and it still does not fit, newest versions go, least recently used first.
  const tight = planSizeEviction(files, { maxBytes: 200, inUse: NOTHING_IN_USE });
  assert.deepEqual(tight.versions.map((v) => `${v.name} ${v.version}`), [
    "bar 1:1-1",
    "bar 1:2-1",
    "foo 1-1",
    "foo 2-1",
  ]);
  assert.equal(tight.remainingBytes, 101 + 50);
  assert.ok(!tight.remove.includes(stray.path), "unparsable files are never evicted");
});

Deno.test("planSizeEviction() uses the latest access of any copy and skips versions in use", () => {
  const a = [
    file("core", "foo-1-1-any.pkg.tar.zst", { atimeMs: 1_000 }),
    file("core", "foo-1-1-any.pkg.tar.xz", { atimeMs: 8_000 }), // a copy with another extension, used recently
  ];
  const b = [file("core", "foo-2-1-any.pkg.tar.zst", { atimeMs: 2_000 })];
  const c = [file("core", "foo-3-1-any.pkg.tar.zst")]; // no access time: counts as never used
  const newest = [file("core", "foo-4-1-any.pkg.tar.zst", { atimeMs: 0 })];
  const files = [...a, ...b, ...c, ...newest];

  const plan = planSizeEviction(files, { maxBytes: 250, inUse: NOTHING_IN_USE });
  assert.deepEqual(plan.versions.map((v) => v.version), ["3-1", "2-1", "1-1"]);

  const inUse = new Set([c[0].path, a[1].path]);
  const busy = planSizeEviction(files, { maxBytes: 0, inUse: (path) => inUse.has(path) });
  assert.deepEqual(busy.remove, paths(b, newest));
  assert.equal(busy.remainingBytes, 300);
});

Deno.test("planSizeEviction() rejects a size limit that is not a number of bytes", () => {
  for (const maxBytes of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => planSizeEviction([], { maxBytes, inUse: NOTHING_IN_USE }), RangeError);
  }
});

Deno.test("planSizeEviction() spares the newest version of each repository folder in its first round", () => {
  const core = signed("core/os/x86_64", "foo-1-1-any.pkg.tar.zst", { atimeMs: 1_000 }); // core's newest
  const testing = signed("core-testing/os/x86_64", "foo-2-1-any.pkg.tar.zst", { atimeMs: 2_000 });
  const barOld = signed("core/os/x86_64", "bar-1-1-any.pkg.tar.zst", { atimeMs: 9_000 });
  const barNew = signed("core/os/x86_64", "bar-2-1-any.pkg.tar.zst", { atimeMs: 9_000 });
  const files = [...core, ...testing, ...barOld, ...barNew];
  const plan = planSizeEviction(files, { maxBytes: 4 * 101 - 1, inUse: NOTHING_IN_USE });
  assert.deepEqual(plan.remove, paths(barOld), "an older version of its own folder goes, not core's newest");
});
