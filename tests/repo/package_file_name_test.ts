import assert from "node:assert/strict";
import {
  isSignature,
  type PackageFileName,
  parsePackageFileName,
  SIGNATURE_SUFFIX,
  signatureOf,
  signedFileOf,
} from "../../src/repo/package_file_name.ts";

Deno.test("parsePackageFileName() splits a plain package file name", () => {
  assert.deepEqual(parsePackageFileName("zstd-1.5.6-1-x86_64.pkg.tar.zst"), {
    name: "zstd",
    version: "1.5.6-1",
    epoch: undefined,
    pkgver: "1.5.6",
    pkgrel: "1",
    arch: "x86_64",
    extension: ".pkg.tar.zst",
  });
});

Deno.test("parsePackageFileName() keeps dashes in the name and splits from the right", () => {
  assert.deepEqual(parsePackageFileName("lib32-xcb-util-cursor-0.1.5-1-x86_64.pkg.tar.zst"), {
    name: "lib32-xcb-util-cursor",
    version: "0.1.5-1",
    epoch: undefined,
    pkgver: "0.1.5",
    pkgrel: "1",
    arch: "x86_64",
    extension: ".pkg.tar.zst",
  });
  assert.equal(parsePackageFileName("a-b-c-d-1-1-any.pkg.tar.xz")?.name, "a-b-c-d");
});

Deno.test("parsePackageFileName() reads epochs, odd versions, releases and architectures", () => {
  const cases: [string, Partial<PackageFileName>][] = [
    ["vim-2:9.1.0-1-x86_64.pkg.tar.zst", { name: "vim", epoch: "2", pkgver: "9.1.0", version: "2:9.1.0-1" }],
    ["python-3.12.3_rc1+git-2.1-any.pkg.tar.zst", { pkgver: "3.12.3_rc1+git", pkgrel: "2.1", arch: "any" }],
    ["foo-1.0~beta-3-aarch64.pkg.tar.xz", { pkgver: "1.0~beta", arch: "aarch64", extension: ".pkg.tar.xz" }],
    ["gtk2+extra-r123.g4567abc-1-armv7h.pkg.tar.gz", { name: "gtk2+extra", pkgver: "r123.g4567abc" }],
    ["libc++-18.1.8-1-x86_64.pkg.tar", { name: "libc++", extension: ".pkg.tar" }],
    ["Foo_Bar@x.y-0:1-1-i686.pkg.tar.zst", { name: "Foo_Bar@x.y", epoch: "0", version: "0:1-1" }],
  ];
  for (const [fileName, expected] of cases) {
    const parsed = parsePackageFileName(fileName);
    assert.ok(parsed, `${fileName} should parse`);
    for (const [key, value] of Object.entries(expected)) {
      assert.equal(parsed[key as keyof typeof parsed], value, `${key} of ${fileName}`);
    }
  }
});

Deno.test("parsePackageFileName() rejects what is not a package file name", () => {
  for (
    const fileName of [
      "core.db",
      "core.db.tar.gz",
      "core.files",
      "zstd-1.5.6-1-x86_64.pkg.tar.zst.sig",
      "zstd-1.5.6-1-x86_64.pkg.tar.zst.part",
      "zstd-1.5.6-x86_64.pkg.tar.zst", // no pkgrel
      "1.5.6-1-x86_64.pkg.tar.zst", // no name
      "-1.5.6-1-x86_64.pkg.tar.zst", // empty name
      "zstd-1.5.6-one-x86_64.pkg.tar.zst", // pkgrel not numeric
      "zstd-1.5.6-1-x86-64.pkg.tar.zst", // the name would be "zstd-1.5.6", the version "1-x86"
      "zstd-x:1.5.6-1-x86_64.pkg.tar.zst", // epoch not numeric
      "zstd-1:2:3-1-x86_64.pkg.tar.zst", // colon in pkgver
      "zstd--1-x86_64.pkg.tar.zst", // empty pkgver
      "zstd-1.5.6-1-.pkg.tar.zst", // empty arch
      ".hidden-1.0-1-any.pkg.tar.zst",
      "zstd-1.5.6-1-x86_64.tar.zst",
      "zstd-1.5.6-1-x86_64.pkg.tar.zst.tmp",
      "",
    ]
  ) {
    assert.equal(parsePackageFileName(fileName), undefined, fileName);
  }
});

Deno.test("signatureOf(), isSignature() and signedFileOf() relate packages and their .sig files", () => {
  const fileName = "lib32-glibc-1:2.39-1-x86_64.pkg.tar.zst";
  assert.equal(SIGNATURE_SUFFIX, ".sig");
  assert.equal(signatureOf(fileName), `${fileName}.sig`);
  assert.equal(isSignature(signatureOf(fileName)), true);
  assert.equal(signedFileOf(signatureOf(fileName)), fileName);
  assert.equal(isSignature(fileName), false);
  assert.equal(signedFileOf(fileName), undefined);
  assert.equal(isSignature("core.db.sig"), false);
  assert.equal(signedFileOf("core.db.sig"), undefined);
  assert.equal(isSignature(".sig"), false);
});
