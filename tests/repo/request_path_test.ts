import assert from "node:assert/strict";
import fc from "fast-check";
import { HttpError } from "../../src/http/http_error.ts";
import type { FileKind } from "../../src/repo/file_kind.ts";
import {
  parseRequestPath,
  type ParseRequestPathOptions,
  type RequestTarget,
} from "../../src/repo/request_path.ts";

const CUSTOM = { customRepoNames: ["archzfs", "chaotic-aur"] };

function expectHttpError(
  rawPath: string,
  status: number,
  options: ParseRequestPathOptions = CUSTOM,
): HttpError {
  let caught: unknown;
  try {
    parseRequestPath(rawPath, options);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof HttpError, `expected HttpError ${status} for ${JSON.stringify(rawPath)}`);
  assert.equal(caught.status, status, `status for ${JSON.stringify(rawPath)}: ${caught.message}`);
  assert.ok(caught.message.length > 10, "the message says what was wrong");
  return caught;
}

Deno.test("parseRequestPath() refuses hostile and malformed paths with 400", () => {
  const hostile: string[] = [
    // traversal and dot segments
    "/core/os/x86_64/../../../etc/passwd",
    "/..",
    "/../etc/passwd",
    "/core/./os/x86_64/a.pkg.tar.zst",
    "/core/os/x86_64/.",
    "/core/os/x86_64/..",
    "/.",
    // hidden names: the cache keeps its own hidden folders
    "/core/os/x86_64/.hidden",
    "/.cache/x",
    "/core/os/x86_64/.zstd-1-1-x86_64.pkg.tar.zst",
    "/custom_repo/archzfs/.flexo/state",
    "/custom_repo/unknown/../x", // hostile wins over the 404 for an unknown custom repo
    "/custom_repo/.unknown/x",
    // percent-encoded '.', '/', '\' and NUL, any case
    "/core/os/x86_64/%2e%2e/%2e%2e/etc/passwd",
    "/core/os/x86_64/%2E%2E",
    "/core/os/x86_64/%2e",
    "/core/os/x86_64/.%2e",
    "/core/os/x86_64/a%2ezst",
    "/core%2fos/x86_64/a.pkg.tar.zst",
    "/core/os/x86_64%2F..%2F..%2Fetc",
    "/core/os/x86_64/a%5cb",
    "/core/os/x86_64/..%5C..%5Cetc",
    "/core/os/x86_64/a%00",
    "/core/os/x86_64/%00.pkg.tar.zst",
    // raw control characters
    "/core/os/x86_64/a\0b",
    "/core/os/x86_64/a\nb",
    "/core/os/x86_64/a\rb",
    "/core/os/x86_64/a\tb",
    "/core/os/x86_64/a\x1bb",
    "/core/os/x86_64/a\x7fb",
    "/core/os/x86_64/a\u0085b",
    // encoded control characters
    "/core/os/x86_64/a%0a",
    "/core/os/x86_64/a%0D%0Ab",
    "/core/os/x86_64/a%1f",
    "/core/os/x86_64/a%1B",
    "/core/os/x86_64/a%7f",
    "/core/os/x86_64/a%7F",
    "/core/os/x86_64/a%C2%85",
    "/core/os/x86_64/a%c2%9f",
    // backslashes
    "/core\\os\\x86_64\\a.pkg.tar.zst",
    "/..\\..\\etc\\passwd",
    "/core/os/x86_64/a\\b",
    // empty segments
    "//etc/passwd",
    "//",
    "///",
    "/core//os/x86_64/a.pkg.tar.zst",
    "/core/os/x86_64//",
    "/core/os/x86_64/a.pkg.tar.zst//",
    "/custom_repo//archzfs/x",
    // not an origin-form path
    "",
    "core/os/x86_64/a.pkg.tar.zst",
    "http://evil.example/core/os/x86_64/a.pkg.tar.zst",
    "https://evil.example/",
    "*",
    "./core",
    "../core",
    "\\core",
    // invalid percent-encoding
    "/core/os/x86_64/%zz",
    "/core/os/x86_64/%",
    "/core/os/x86_64/a%4",
    "/core/os/x86_64/%g0",
    "/core/os/x86_64/%e0%80",
    "/core/os/x86_64/%ff",
    "/core/os/x86_64/%c3%28",
    "/core/os/x86_64/%ed%a0%80", // encoded lone surrogate
    // characters that cannot be in a path
    "/core/os/x86_64/a?b",
    "/core/os/x86_64/a#b",
    "/core/os/x86_64/a b",
    // not a well-formed string
    "/core/os/x86_64/\uD800.pkg.tar.zst",
  ];
  for (const rawPath of hostile) {
    expectHttpError(rawPath, 400);
  }
});

Deno.test("parseRequestPath() says which rule a refused path broke", () => {
  const table: [string, RegExp][] = [
    ["/core/os/x86_64/%zz", /not followed by two hex digits/],
    ["/core/os/x86_64/%e0%80", /valid UTF-8/],
    ["/core/os/x86_64/%2e%2e", /percent-encoded/],
    ["/core/os/x86_64/..", /'\.' or '\.\.' segment/],
    ["/core/os/x86_64/.git", /starts with '\.'/],
    ["/core//x", /empty segment/],
    ["/core/a%0a", /control character/],
    ["/core\\os", /forbidden character/],
    ["core/os", /must start with '\/'/],
  ];
  for (const [raw, message] of table) {
    assert.match(expectHttpError(raw, 400).message, message, raw);
  }
});

Deno.test("parseRequestPath() answers 414 for a path over 1024 bytes or a segment over 255", () => {
  const segment200 = "a".repeat(200);
  const exactly1024 = ("/" + segment200).repeat(5) + "/" + "b".repeat(1024 - 5 * 201 - 1);
  assert.equal(exactly1024.length, 1024);
  assert.equal(parseRequestPath(exactly1024, CUSTOM).kind, "other");
  expectHttpError(exactly1024 + "c", 414);
  expectHttpError("/" + "a".repeat(2000), 414);
  // multi-byte characters count in bytes
  expectHttpError("/" + "a/".repeat(300) + "é".repeat(200), 414);

  assert.equal(parseRequestPath("/core/os/x86_64/" + "a".repeat(255), CUSTOM).fileName.length, 255);
  expectHttpError("/core/os/x86_64/" + "a".repeat(256), 414);
  expectHttpError("/" + "é".repeat(128), 414); // 256 bytes
  assert.equal(parseRequestPath("/" + "é".repeat(127), CUSTOM).fileName, "é".repeat(127));
  // the limit applies to the decoded segment
  expectHttpError("/core/os/x86_64/" + "%41".repeat(256), 414);
  assert.equal(parseRequestPath("/core/os/x86_64/" + "%41".repeat(255), CUSTOM).fileName, "A".repeat(255));
});

Deno.test("parseRequestPath() returns kind other with nothing else for /", () => {
  assert.deepEqual(parseRequestPath("/", CUSTOM), {
    kind: "other",
    cacheSegments: [],
    upstreamPath: "",
    fileName: "",
  });
});

Deno.test("parseRequestPath() recognises /$repo/os/$arch/FILE", () => {
  const cases: [string, FileKind][] = [
    ["/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst", "package"],
    ["/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst.sig", "package_signature"],
    ["/extra/os/x86_64/extra.db", "database"],
    ["/multilib/os/x86_64/multilib.files.sig", "database_signature"],
    ["/core/os/aarch64/core.db.tar.gz", "database"],
    ["/core/os/x86_64/index.html", "other"],
  ];
  for (const [raw, kind] of cases) {
    const [repo, , arch, fileName] = raw.slice(1).split("/");
    assert.deepEqual(parseRequestPath(raw, CUSTOM), {
      kind,
      cacheSegments: [repo, "os", arch, fileName],
      upstreamPath: `${repo}/os/${arch}/${fileName}`,
      repo,
      arch,
      fileName,
    }, raw);
  }
});

Deno.test("parseRequestPath() decodes safe percent-encodings and re-encodes upstreamPath", () => {
  const cases: { raw: string; fileName: string; upstream: string }[] = [
    // epoch file names: ':' may arrive encoded (either case) or raw, and goes upstream literally
    {
      raw: "/extra/os/x86_64/big-1%3A2.0-1-x86_64.pkg.tar.zst",
      fileName: "big-1:2.0-1-x86_64.pkg.tar.zst",
      upstream: "extra/os/x86_64/big-1:2.0-1-x86_64.pkg.tar.zst",
    },
    {
      raw: "/extra/os/x86_64/big-1%3a2.0-1-x86_64.pkg.tar.zst",
      fileName: "big-1:2.0-1-x86_64.pkg.tar.zst",
      upstream: "extra/os/x86_64/big-1:2.0-1-x86_64.pkg.tar.zst",
    },
    {
      raw: "/extra/os/x86_64/big-1:2.0-1-x86_64.pkg.tar.zst",
      fileName: "big-1:2.0-1-x86_64.pkg.tar.zst",
      upstream: "extra/os/x86_64/big-1:2.0-1-x86_64.pkg.tar.zst",
    },
    // '+' encoded or raw stays literal upstream
    {
      raw: "/extra/os/x86_64/gtk%2B%2B-1-1-x86_64.pkg.tar.zst",
      fileName: "gtk++-1-1-x86_64.pkg.tar.zst",
      upstream: "extra/os/x86_64/gtk++-1-1-x86_64.pkg.tar.zst",
    },
    {
      raw: "/extra/os/x86_64/libc++-19-1-x86_64.pkg.tar.zst",
      fileName: "libc++-19-1-x86_64.pkg.tar.zst",
      upstream: "extra/os/x86_64/libc++-19-1-x86_64.pkg.tar.zst",
    },
    // '@', '=', ',' and '~' stay literal, encoded or not
    {
      raw: "/extra/os/x86_64/a%40b%3Dc%2Cd~e-1-1-any.pkg.tar.zst",
      fileName: "a@b=c,d~e-1-1-any.pkg.tar.zst",
      upstream: "extra/os/x86_64/a@b=c,d~e-1-1-any.pkg.tar.zst",
    },
    {
      raw: "/extra/os/x86_64/a@b=c,d~e-1-1-any.pkg.tar.zst",
      fileName: "a@b=c,d~e-1-1-any.pkg.tar.zst",
      upstream: "extra/os/x86_64/a@b=c,d~e-1-1-any.pkg.tar.zst",
    },
    // other characters are decoded for the cache and re-encoded for the mirror
    {
      raw: "/extra/os/x86_64/a%20b%25c%C3%A9.pkg.tar.zst",
      fileName: "a b%cé.pkg.tar.zst",
      upstream: "extra/os/x86_64/a%20b%25c%C3%A9.pkg.tar.zst",
    },
    {
      raw: "/extra/os/x86_64/%61%62c.pkg.tar.zst",
      fileName: "abc.pkg.tar.zst",
      upstream: "extra/os/x86_64/abc.pkg.tar.zst",
    },
  ];
  for (const { raw, fileName, upstream } of cases) {
    const target = parseRequestPath(raw, CUSTOM);
    assert.equal(target.kind, "package", raw);
    assert.equal(target.fileName, fileName, raw);
    assert.equal(target.cacheSegments[3], fileName, raw);
    assert.equal(target.upstreamPath, upstream, raw);
    // appending to a base URL keeps exactly this path
    const url = new URL("https://mirror.example/archlinux/" + target.upstreamPath);
    assert.equal(url.pathname, "/archlinux/" + upstream, raw);
  }
});

Deno.test("parseRequestPath() returns kind other for well-formed non-cacheable paths", () => {
  const cases: { raw: string; segments: string[]; upstream: string; fileName: string }[] = [
    { raw: "/lastsync", segments: ["lastsync"], upstream: "lastsync", fileName: "lastsync" },
    {
      raw: "/iso/latest/sha256sums.txt",
      segments: ["iso", "latest", "sha256sums.txt"],
      upstream: "iso/latest/sha256sums.txt",
      fileName: "sha256sums.txt",
    },
    {
      raw: "/core/os/x86_64/",
      segments: ["core", "os", "x86_64"],
      upstream: "core/os/x86_64/",
      fileName: "",
    },
    { raw: "/core/", segments: ["core"], upstream: "core/", fileName: "" },
    // right file names in the wrong shape are not cacheable
    {
      raw: "/core/x86_64/a-1-1-x86_64.pkg.tar.zst",
      segments: ["core", "x86_64", "a-1-1-x86_64.pkg.tar.zst"],
      upstream: "core/x86_64/a-1-1-x86_64.pkg.tar.zst",
      fileName: "a-1-1-x86_64.pkg.tar.zst",
    },
    {
      raw: "/core/os/x86_64/sub/a-1-1-x86_64.pkg.tar.zst",
      segments: ["core", "os", "x86_64", "sub", "a-1-1-x86_64.pkg.tar.zst"],
      upstream: "core/os/x86_64/sub/a-1-1-x86_64.pkg.tar.zst",
      fileName: "a-1-1-x86_64.pkg.tar.zst",
    },
    {
      raw: "/core/pkg/x86_64/core.db",
      segments: ["core", "pkg", "x86_64", "core.db"],
      upstream: "core/pkg/x86_64/core.db",
      fileName: "core.db",
    },
    { raw: "/core.db", segments: ["core.db"], upstream: "core.db", fileName: "core.db" },
    {
      raw: "/core/os/x86_64/a.pkg.tar.zst/",
      segments: ["core", "os", "x86_64", "a.pkg.tar.zst"],
      upstream: "core/os/x86_64/a.pkg.tar.zst/",
      fileName: "",
    },
  ];
  for (const { raw, segments, upstream, fileName } of cases) {
    const target = parseRequestPath(raw, CUSTOM);
    assert.deepEqual(
      target,
      { kind: "other", cacheSegments: segments, upstreamPath: upstream, fileName },
      raw,
    );
  }
});

Deno.test("parseRequestPath() serves configured custom repos below /custom_repo/NAME/", () => {
  const cases: { raw: string; expected: RequestTarget }[] = [
    {
      raw: "/custom_repo/archzfs/archzfs/x86_64/zfs-1-1-x86_64.pkg.tar.zst",
      expected: {
        kind: "package",
        cacheSegments: ["custom_repo", "archzfs", "archzfs", "x86_64", "zfs-1-1-x86_64.pkg.tar.zst"],
        upstreamPath: "archzfs/x86_64/zfs-1-1-x86_64.pkg.tar.zst",
        customRepo: "archzfs",
        fileName: "zfs-1-1-x86_64.pkg.tar.zst",
      },
    },
    {
      raw: "/custom_repo/archzfs/archzfs/x86_64/archzfs.db",
      expected: {
        kind: "database",
        cacheSegments: ["custom_repo", "archzfs", "archzfs", "x86_64", "archzfs.db"],
        upstreamPath: "archzfs/x86_64/archzfs.db",
        customRepo: "archzfs",
        fileName: "archzfs.db",
      },
    },
    {
      raw: "/custom_repo/chaotic-aur/x86_64/big-1%3A2-1-x86_64.pkg.tar.zst.sig",
      expected: {
        kind: "package_signature",
        cacheSegments: ["custom_repo", "chaotic-aur", "x86_64", "big-1:2-1-x86_64.pkg.tar.zst.sig"],
        upstreamPath: "x86_64/big-1:2-1-x86_64.pkg.tar.zst.sig",
        customRepo: "chaotic-aur",
        fileName: "big-1:2-1-x86_64.pkg.tar.zst.sig",
      },
    },
    {
      raw: "/custom_repo/archzfs/a-1-1-any.pkg.tar.xz",
      expected: {
        kind: "package",
        cacheSegments: ["custom_repo", "archzfs", "a-1-1-any.pkg.tar.xz"],
        upstreamPath: "a-1-1-any.pkg.tar.xz",
        customRepo: "archzfs",
        fileName: "a-1-1-any.pkg.tar.xz",
      },
    },
    {
      raw: "/custom_repo/archzfs/archzfs/x86_64/README",
      expected: {
        kind: "other",
        cacheSegments: ["custom_repo", "archzfs", "archzfs", "x86_64", "README"],
        upstreamPath: "archzfs/x86_64/README",
        customRepo: "archzfs",
        fileName: "README",
      },
    },
    {
      raw: "/custom_repo/archzfs/archzfs/x86_64/",
      expected: {
        kind: "other",
        cacheSegments: ["custom_repo", "archzfs", "archzfs", "x86_64"],
        upstreamPath: "archzfs/x86_64/",
        customRepo: "archzfs",
        fileName: "",
      },
    },
    {
      raw: "/custom_repo/archzfs/",
      expected: {
        kind: "other",
        cacheSegments: ["custom_repo", "archzfs"],
        upstreamPath: "",
        customRepo: "archzfs",
        fileName: "",
      },
    },
    {
      raw: "/custom_repo/archzfs",
      expected: {
        kind: "other",
        cacheSegments: ["custom_repo", "archzfs"],
        upstreamPath: "",
        customRepo: "archzfs",
        fileName: "",
      },
    },
  ];
  for (const { raw, expected } of cases) {
    assert.deepEqual(parseRequestPath(raw, CUSTOM), expected, raw);
    assert.deepEqual(
      parseRequestPath(raw, { customRepoNames: new Set(CUSTOM.customRepoNames) }),
      expected,
      raw,
    );
  }
});

Deno.test("parseRequestPath() answers 404 with configuration help for an unknown custom repo", () => {
  for (
    const raw of [
      "/custom_repo/nope/x86_64/a-1-1-x86_64.pkg.tar.zst",
      "/custom_repo/ArchZFS/archzfs/x86_64/archzfs.db", // names are case-sensitive
      "/custom_repo/os/x86_64/a.pkg.tar.zst",
      "/custom_repo/nope/",
      "/custom_repo/",
      "/custom_repo",
    ]
  ) {
    const error = expectHttpError(raw, 404);
    assert.match(error.message, /\[\[custom_repo\]\]/, raw);
    assert.match(error.message, /"archzfs", "chaotic-aur"/, raw);
  }
  const error = expectHttpError("/custom_repo/nope/x.db", 404, { customRepoNames: new Set<string>() });
  assert.match(error.message, /"nope"/);
  assert.match(error.message, /configured: none/);
});

Deno.test("parseRequestPath() gives a plain path the target its percent-encoded twin gets through the full decoding", () => {
  // Plain paths take a shortcut (no decoding, no re-encoding); the same path with one character of each segment
  // percent-encoded goes the long way. Both must name the same file, upstream and in the cache.
  const plainChar = fc.constantFrom(..."abcxyzABCXYZ0189._+:@=,~-");
  const segment = fc.tuple(fc.constantFrom(..."aZ09_+:@=,~-"), fc.array(plainChar, { maxLength: 20 }))
    .map(([first, rest]) => first + rest.join(""));
  const path = fc.tuple(
    fc.oneof(
      fc.constant("core/os/x86_64"),
      fc.array(segment, { minLength: 0, maxLength: 5 }).map((s) => s.join("/")),
    ),
    segment,
    fc.boolean(),
  ).map(([dir, file, directory]) => `/${dir === "" ? "" : dir + "/"}${file}${directory ? "/" : ""}`);
  fc.assert(
    fc.property(path, fc.nat(), (plain, pick) => {
      const twin = plain.split("/").map((segment) => {
        if (segment === "") return segment;
        const at = pick % segment.length;
        const code = segment.charCodeAt(at).toString(16).toUpperCase().padStart(2, "0");
        return segment.slice(0, at) + "%" + code + segment.slice(at + 1);
      }).join("/");
      const options = { customRepoNames: [] };
      // A percent-encoded '.' is refused on the long way: such twins say nothing.
      fc.pre(!/%2E/i.test(twin));
      assert.deepStrictEqual(parseRequestPath(plain, options), parseRequestPath(twin, options));
    }),
    { numRuns: 2000 },
  );
});
