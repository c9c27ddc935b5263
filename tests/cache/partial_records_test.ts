import assert from "node:assert/strict";
import { join } from "node:path";
import {
  parsePartialRecord,
  PARTIAL_RECORD_SUFFIX,
  type PartialMeta,
  readPartialRecord,
  writePartialRecord,
} from "../../src/cache/partial_records.ts";
import { isDiskFull } from "../../src/download/file_writes.ts";
import { fillUp, mountTmpfs, umount } from "../helpers/fault_tools.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const PATH = "/cache/.partial/core/os/x86_64/a-1-1-any.pkg.tar.zst.meta.json";

/** The message of an invalid record, failing when the record is not invalid. */
function invalidMessage(text: string): string {
  const read = parsePartialRecord(text, PATH);
  assert.equal(read.kind, "invalid", text);
  return read.kind === "invalid" ? read.message : "";
}

Deno.test("parsePartialRecord() reads a whole record back as it was written", () => {
  const meta: PartialMeta = {
    total: 1000,
    lastModified: 1_700_000_000_000,
    mirror: "http://a.test/",
  };
  assert.deepEqual(parsePartialRecord(JSON.stringify(meta), PATH), { kind: "found", meta });
});

Deno.test("parsePartialRecord() reads old records with fewer fields, and ignores fields it does not know", () => {
  // Records of older versions: only some of the fields, or none (a signature's download announces no total).
  assert.deepEqual(parsePartialRecord('{"total":100}', PATH), { kind: "found", meta: { total: 100 } });
  assert.deepEqual(parsePartialRecord("{}", PATH), { kind: "found", meta: {} });
  assert.deepEqual(
    parsePartialRecord('{"total":0,"etag":"\\"x\\"","version":2,"contentType":"application/zstd"}', PATH),
    { kind: "found", meta: { total: 0 } },
    "fields of other versions are dropped, not kept nor refused",
  );
});

Deno.test("parsePartialRecord() refuses what is not a record flexo wrote, and says what was wrong", () => {
  for (
    const [text, what] of [
      ["not json", "not JSON"],
      ["", "not JSON"],
      ["[1,2]", "object"],
      ["null", "object"],
      ['"total"', "object"],
      ['{"total":-5}', "total"],
      ['{"total":1.5}', "total"],
      ['{"total":"100"}', "total"],
      ['{"total":null}', "total"],
      ['{"total":1e300}', "total"],
      ['{"lastModified":"yesterday"}', "lastModified"],
      ['{"mirror":["http://a.test/"]}', "mirror"],
    ]
  ) {
    const message = invalidMessage(text);
    assert.ok(message.startsWith(`${PATH} is not a valid download record: `), message);
    assert.ok(message.includes(what), `${JSON.stringify(text)}: ${message}`);
    assert.ok(message.includes("not resumed"), "and what it means for the download");
  }
});

Deno.test("readPartialRecord() tells a missing record from an unreadable one, and never throws", async () => {
  await withTempDir(async (dir) => {
    assert.deepEqual(readPartialRecord(join(dir, "none.meta.json")), { kind: "missing" });
    assert.deepEqual(readPartialRecord(join(dir, "no-folder", "x.meta.json")), { kind: "missing" });
    await Deno.writeTextFile(join(dir, "file"), "");
    assert.deepEqual(
      readPartialRecord(join(dir, "file", "x.meta.json")),
      { kind: "missing" },
      "a file as folder",
    );
    const folder = join(dir, `folder${PARTIAL_RECORD_SUFFIX}`);
    await Deno.mkdir(folder);
    const read = readPartialRecord(folder);
    assert.equal(read.kind, "invalid");
    assert.ok(read.kind === "invalid" && read.message.includes("cannot be read"), JSON.stringify(read));
  });
});

Deno.test("writePartialRecord() makes the folders, replaces the record whole and writes only the record's fields", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, ".partial", "core", "os", "x86_64", `a.pkg.tar.zst${PARTIAL_RECORD_SUFFIX}`);
    writePartialRecord(path, { total: 1000, mirror: "http://a.test/" });
    assert.deepEqual(readPartialRecord(path), {
      kind: "found",
      meta: { total: 1000, mirror: "http://a.test/" },
    });
    const withExtra = { total: 2000, lastModified: 5, extra: "not a field" } as PartialMeta;
    writePartialRecord(path, withExtra);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), { total: 2000, lastModified: 5 });
    assert.deepEqual(
      (await Array.fromAsync(Deno.readDir(join(path, "..")))).map((entry) => entry.name),
      [`a.pkg.tar.zst${PARTIAL_RECORD_SUFFIX}`],
      "no temporary file is left",
    );
  });
});

Deno.test("writePartialRecord() on a full disk throws, keeps the record before, and leaves no temporary file", async (t) => {
  await withTempDir(async (dir) => {
    const disk = join(dir, "disk");
    await Deno.mkdir(disk);
    if (!(await mountTmpfs(disk, "256k"))) {
      await t.step({ name: "skipped: cannot mount a tmpfs here (needs root)", ignore: true, fn: () => {} });
      return;
    }
    try {
      const path = join(disk, `a.pkg.tar.zst${PARTIAL_RECORD_SUFFIX}`);
      writePartialRecord(path, { total: 1000 });
      await fillUp(join(disk, "filler"));
      const mirror = `http://a.test/${"x".repeat(8192)}`; // more than a full tmpfs may still take
      assert.throws(
        () => writePartialRecord(path, { total: 2000, mirror }),
        (error: unknown) => isDiskFull(error),
      );
      assert.deepEqual(readPartialRecord(path), { kind: "found", meta: { total: 1000 } });
      assert.deepEqual(
        (await Array.fromAsync(Deno.readDir(disk))).map((entry) => entry.name).sort(),
        [`a.pkg.tar.zst${PARTIAL_RECORD_SUFFIX}`, "filler"],
        "no temporary file is left",
      );
    } finally {
      await umount(disk);
    }
  });
});
