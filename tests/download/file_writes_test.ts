import { assert, assertEquals } from "../helpers/assert.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { CacheStore } from "../../src/cache/cache_store.ts";
import { runError } from "../../src/download/file_writes.ts";
import { HttpError } from "../../src/http/http_error.ts";

const SEGMENTS = ["core", "os", "x86_64", "big-1-1-x86_64.pkg.tar.zst"];

Deno.test("runError() answers a full disk with 507 naming the directory, and removes the partial file", async () => {
  await withTempDir(async (dir) => {
    const store = new CacheStore(dir);
    const file = store.openPartial(SEGMENTS, { truncate: true });
    file.writeSync(new Uint8Array(10));
    file.close();
    assertEquals(store.partialSize(SEGMENTS), 10);
    const full = Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
    const error = await runError(full, { store, segments: SEGMENTS, path: "core/os/x86_64/big" });
    assert(error instanceof HttpError);
    assertEquals(error.status, 507);
    assert(error.message.includes(dir), error.message);
    assertEquals(store.partialSize(SEGMENTS), 0, "the partial file is gone");
  });
});

Deno.test("runError() passes HTTP errors through and keeps other errors as they are", async () => {
  await withTempDir(async (dir) => {
    const store = new CacheStore(dir);
    const where = { store, segments: SEGMENTS, path: "core/os/x86_64/big" };
    const http = new HttpError(502, "every mirror failed");
    assertEquals(await runError(http, where), http);
    const other = new Error("boom");
    assertEquals(await runError(other, where), other);
    assertEquals((await runError("text", where)).message, "text");
  });
});
