import assert from "node:assert/strict";
import { CachePaths, isMissing, PARTIAL_DIR } from "../../src/cache/cache_paths.ts";
import { PARTIAL_RECORD_SUFFIX } from "../../src/cache/partial_records.ts";

Deno.test("CachePaths puts complete files in the mirror layout and downloads in progress in PARTIAL_DIR", () => {
  const paths = new CachePaths("/srv/cache/");
  const segments = ["core", "os", "x86_64", "a-1-1-any.pkg.tar.zst"];
  assert.equal(PARTIAL_DIR, ".partial");
  assert.equal(paths.root, "/srv/cache");
  assert.equal(paths.partialRoot, "/srv/cache/.partial");
  assert.equal(paths.finalPath(segments), "/srv/cache/core/os/x86_64/a-1-1-any.pkg.tar.zst");
  assert.equal(paths.partialPath(segments), "/srv/cache/.partial/core/os/x86_64/a-1-1-any.pkg.tar.zst");
  assert.equal(paths.recordPath(segments), `${paths.partialPath(segments)}${PARTIAL_RECORD_SUFFIX}`);
  assert.throws(() => paths.partialPath([".."]), /outside the cache directory/);
  assert.throws(() => paths.recordPath(["..", ".."]), /outside the cache directory/);
});

Deno.test("isMissing() is true for a missing file or folder only", () => {
  assert.ok(isMissing(new Deno.errors.NotFound("x")));
  assert.ok(isMissing(new Deno.errors.NotADirectory("x")));
  assert.ok(!isMissing(new Deno.errors.PermissionDenied("x")));
  assert.ok(!isMissing(new Error("x")));
});
