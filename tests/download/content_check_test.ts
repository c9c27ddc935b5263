import { join } from "node:path";
import { checkDatabase, failedCheck, RejectedCopies } from "../../src/download/content_check.ts";
import { makeRepo } from "../helpers/make_repo.ts";
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

Deno.test("checkDatabase() lets through unchecked a valid database compressed in a way it cannot read", async () => {
  await withTempDir(async (dir) => {
    // repo-add writes bzip2 for NAME.db.tar.bz2; xz with a SHA-256 check is valid xz that xz-embedded cannot read.
    // Neither may be discarded as corrupt: every client of such a repository would get 502 for its database.
    const repo = await makeRepo(join(dir, "mirror"), {
      repo: "flexotest",
      packages: [{ name: "tool", version: "1.0-1" }],
      dbExtension: "tar.bz2",
    });
    const bzip2 = join(repo.osDir, "flexotest.db.tar.bz2");
    const tar = await new Deno.Command("bzip2", { args: ["-dc", bzip2], stdout: "piped" }).output();
    const xzCommand = new Deno.Command("xz", {
      args: ["--check=sha256", "-c"],
      stdin: "piped",
      stdout: "piped",
    });
    const xz = xzCommand.spawn();
    const writer = xz.stdin.getWriter();
    await writer.write(tar.stdout);
    await writer.close();
    const sha256Xz = join(dir, "flexotest.db.tar.xz");
    await Deno.writeFile(sha256Xz, (await xz.output()).stdout);
    for (const path of [bzip2, sha256Xz]) {
      const verdict = await checkDatabase(path, (await Deno.stat(path)).size);
      assert(
        verdict.type === "unchecked" && /not supported|cannot be read here/.test(verdict.reason),
        `${path}: ${JSON.stringify(verdict)}`,
      );
      assertEquals(
        await failedCheck(checkDatabase, { path, length: (await Deno.stat(path)).size, upstreamPath: "x" }),
        undefined,
      );
    }
  });
});
