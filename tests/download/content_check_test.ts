import { checkDatabase, RejectedCopies } from "../../src/download/content_check.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { testDatabase } from "../helpers/test_database.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

Deno.test("checkDatabase() accepts a sync database and names what is wrong with a corrupt one", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/core.db`;
    const db = testDatabase(1);
    await Deno.writeFile(path, db);
    assertEquals(await checkDatabase(path, db.length), { type: "valid" });
    db[148] ^= 0xff; // the first tar header's checksum
    await Deno.writeFile(path, db);
    const verdict = await checkDatabase(path, db.length);
    assert(
      verdict.type === "invalid" && /not a valid pacman database/.test(verdict.reason),
      JSON.stringify(verdict),
    );
  });
});

Deno.test("RejectedCopies remembers a mirror's copy by its date and length, the oldest forgotten first", () => {
  const rejected = new RejectedCopies(2);
  const copy = {
    upstreamPath: "/core/os/x86_64/core.db",
    mirror: "http://a.test/",
    lastModified: 1000,
    total: 9,
  };
  rejected.add(copy);
  assert(rejected.has(copy));
  assert(!rejected.has({ ...copy, lastModified: 2000 }), "a newer copy is another copy");
  assert(!rejected.has({ ...copy, mirror: "http://b.test/" }), "another mirror's copy is another copy");
  rejected.add({ ...copy, lastModified: undefined });
  assert(!rejected.has({ ...copy, lastModified: undefined }), "a copy without a date is never remembered");
  rejected.add({ ...copy, total: 10 });
  rejected.add({ ...copy, total: 11 });
  assert(!rejected.has(copy), "the oldest was forgotten");
});
