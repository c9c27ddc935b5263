import assert from "node:assert/strict";
import { classifyFileName, type FileKind } from "../../src/repo/file_kind.ts";

Deno.test("classifyFileName() tells packages, databases and their signatures apart", () => {
  const table: [string, FileKind][] = [
    ["zstd-1.5.6-1-x86_64.pkg.tar", "package"],
    ["zstd-1.5.6-1-x86_64.pkg.tar.zst", "package"],
    ["zstd-1.5.6-1-x86_64.pkg.tar.xz", "package"],
    ["a-1-1-any.pkg.tar.gz", "package"],
    ["a-1-1-any.pkg.tar.bz2", "package"],
    ["a-1-1-any.pkg.tar.lz4", "package"],
    ["a-1-1-any.pkg.tar.lrz", "package"],
    ["a-1-1-any.pkg.tar.lzo", "package"],
    ["a-1-1-any.pkg.tar.Z", "package"],
    ["big-1:2.0-1-x86_64.pkg.tar.zst", "package"],
    ["a-1-1-any.pkg.tar.zst.sig", "package_signature"],
    ["a-1-1-any.pkg.tar.sig", "package_signature"],
    ["a-1-1-any.pkg.tar.Z.sig", "package_signature"],
    ["core.db", "database"],
    ["core.files", "database"],
    ["core.db.tar.gz", "database"],
    ["core.db.tar.zst", "database"],
    ["core.db.tar.xz", "database"],
    ["core.db.tar.bz2", "database"],
    ["core.files.tar.gz", "database"],
    ["core.files.tar.zst", "database"],
    ["core.files.tar.xz", "database"],
    ["core.files.tar.bz2", "database"],
    ["core.links.tar.gz", "database"],
    ["core.db.sig", "database_signature"],
    ["core.files.sig", "database_signature"],
    ["core.db.tar.gz.sig", "database_signature"],
    ["core.files.tar.zst.sig", "database_signature"],
    ["core.links.tar.gz.sig", "database_signature"],
    // not ours
    ["a-1-1-any.pkg.tar.zst.part", "other"],
    ["a-1-1-any.pkg.tar.z", "other"],
    ["a-1-1-any.pkg.tar.7z", "other"],
    ["a-1-1-any.pkg.tar.zst.sig.sig", "other"],
    ["a-1-1-any.pkg.zst", "other"],
    ["a.pkg.tar.zstd", "other"],
    [".pkg.tar.zst", "other"],
    [".db", "other"],
    ["core.db.tar.lz4", "other"],
    ["core.links.tar.zst", "other"],
    ["core.links", "other"],
    ["core.dbx", "other"],
    ["core.db.old", "other"],
    ["core.sig", "other"],
    [".sig", "other"],
    ["lastsync", "other"],
    ["sha256sums.txt", "other"],
    ["index.html", "other"],
    ["", "other"],
  ];
  for (const [name, kind] of table) {
    assert.equal(classifyFileName(name), kind, name);
  }
});

Deno.test("classifyFileName() knows lzip packages and uncompressed databases, which makepkg and repo-add write", () => {
  // makepkg's PKGEXT takes `.pkg.tar.lz` (lzip), and repo-add writes `NAME.db.tar` when told so (no compression).
  const table: [string, FileKind][] = [
    ["a-1-1-any.pkg.tar.lz", "package"],
    ["a-1-1-any.pkg.tar.lz.sig", "package_signature"],
    ["core.db.tar", "database"],
    ["core.files.tar", "database"],
    ["core.db.tar.sig", "database_signature"],
  ];
  for (const [name, kind] of table) {
    assert.equal(classifyFileName(name), kind, name);
  }
});
