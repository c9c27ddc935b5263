import nodeAssert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";

import { type CachedFile, CacheStore, type HotFile } from "../../src/cache/cache_store.ts";
import { Download, type DownloadHead } from "../../src/download/download.ts";
import { HttpError } from "../../src/http/http_error.ts";
import { contentTypeFor, ORIGIN_HEADER, serveCachedFile, serveDownload } from "../../src/app/responses.ts";
import { fileBodyOf } from "../../src/http/file_body.ts";
import { type Gate, gatedMirror, testBytes } from "../helpers/fake_fetch.ts";
import { startTestDownload } from "../helpers/test_download.ts";

const URL_PKG = "http://flexo.test/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst";
const MTIME = new Date(1_700_000_000_000);
const MTIME_HTTP = "Tue, 14 Nov 2023 22:13:20 GMT";
/** makeEtag(1000, MTIME): size and milliseconds in hex. */
const ETAG = '"3e8-18bcfe56800"';
const SIZE = 1_000;
const TYPE = "application/octet-stream";

function request(headers: Record<string, string> = {}, method = "GET"): Request {
  return new Request(URL_PKG, { method, headers });
}

async function bytesOf(response: Response): Promise<Uint8Array> {
  return new Uint8Array(await response.arrayBuffer());
}

/** A cached file of SIZE test bytes with mtime MTIME; removed after `fn`. */
async function withCachedFile(fn: (file: CachedFile, data: Uint8Array) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-responses-" });
  try {
    const data = testBytes(SIZE, 1);
    const path = join(dir, "zstd-1.5.6-1-x86_64.pkg.tar.zst");
    await Deno.writeFile(path, data);
    await Deno.utime(path, MTIME, MTIME);
    await fn({ path, size: SIZE, mtime: (await Deno.stat(path)).mtime! }, data);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("serveCachedFile() answers 200 with the validators, length, type and origin", async () => {
  await withCachedFile(async (file, data) => {
    const served = await serveCachedFile(request(), file, { origin: "Cache", contentType: TYPE });
    const { response } = served;
    assertEquals(response.status, 200);
    assertEquals(response.headers.get("accept-ranges"), "bytes");
    assertEquals(response.headers.get("last-modified"), MTIME_HTTP);
    assertEquals(response.headers.get("etag"), ETAG);
    assertEquals(response.headers.get("content-length"), String(SIZE));
    assertEquals(response.headers.get("content-type"), TYPE);
    assertEquals(response.headers.get(ORIGIN_HEADER), "Cache");
    assertEquals(response.headers.get("content-range"), null);
    assertEquals(served.bytes, SIZE);
    assertEquals(served.readsFile, file.path);
    assertEquals(
      fileBodyOf(response),
      { path: file.path, start: 0, length: SIZE, size: SIZE },
      "for sendfile",
    );
    assertEquals(await bytesOf(response), data);
  });
});

Deno.test("serveCachedFile() names the origin it is given", async () => {
  await withCachedFile(async (file) => {
    const served = await serveCachedFile(request({}, "HEAD"), file, {
      origin: "RemoteMirror",
      contentType: TYPE,
    });
    assertEquals(served.response.headers.get("flexo-payload-origin"), "RemoteMirror");
  });
});

Deno.test("serveCachedFile() answers 304 to a matching If-None-Match", async () => {
  await withCachedFile(async (file) => {
    const served = await serveCachedFile(request({ "If-None-Match": ETAG }), file, {
      origin: "Cache",
      contentType: TYPE,
    });
    assertEquals(served.response.status, 304);
    assertEquals(served.response.body, null);
    assertEquals(served.bytes, 0);
    assertEquals(served.readsFile, undefined);
    assertEquals(served.response.headers.get("etag"), ETAG);
    assertEquals(served.response.headers.get("content-length"), null);
    assertEquals(served.response.headers.get("content-type"), null);
    const other = await serveCachedFile(request({ "If-None-Match": '"other"' }), file, {
      origin: "Cache",
      contentType: TYPE,
    });
    assertEquals(other.response.status, 200);
    await other.response.body?.cancel();
  });
});

Deno.test("serveCachedFile() answers 304 to If-Modified-Since at or after the modification time", async () => {
  await withCachedFile(async (file) => {
    const options = { origin: "Cache" as const, contentType: TYPE };
    const same = await serveCachedFile(request({ "If-Modified-Since": MTIME_HTTP }), file, options);
    assertEquals(same.response.status, 304);
    const later = await serveCachedFile(
      request({ "If-Modified-Since": "Wed, 15 Nov 2023 00:00:00 GMT" }),
      file,
      options,
    );
    assertEquals(later.response.status, 304);
    const earlier = await serveCachedFile(
      request({ "If-Modified-Since": "Tue, 14 Nov 2023 22:13:19 GMT" }),
      file,
      options,
    );
    assertEquals(earlier.response.status, 200);
    await earlier.response.body?.cancel();
    const mismatchedTag = await serveCachedFile(
      request({ "If-None-Match": '"other"', "If-Modified-Since": MTIME_HTTP }),
      file,
      options,
    );
    assertEquals(mismatchedTag.response.status, 200, "If-None-Match takes precedence over If-Modified-Since");
    await mismatchedTag.response.body?.cancel();
  });
});

Deno.test("serveCachedFile() answers 206 with Content-Range for a byte range", async () => {
  await withCachedFile(async (file, data) => {
    const options = { origin: "Cache" as const, contentType: TYPE };
    const cases: [string, number, number][] = [
      ["bytes=100-199", 100, 199],
      ["bytes=0-0", 0, 0],
      ["bytes=900-", 900, 999],
      ["bytes=-10", 990, 999],
      ["bytes=500-5000", 500, 999],
    ];
    for (const [range, start, end] of cases) {
      const served = await serveCachedFile(request({ Range: range }), file, options);
      assertEquals(served.response.status, 206, range);
      assertEquals(served.response.headers.get("content-range"), `bytes ${start}-${end}/${SIZE}`, range);
      assertEquals(served.response.headers.get("content-length"), String(end - start + 1), range);
      assertEquals(served.bytes, end - start + 1, range);
      assertEquals(fileBodyOf(served.response), {
        path: file.path,
        start,
        length: end - start + 1,
        size: SIZE,
      });
      assertEquals(await bytesOf(served.response), data.slice(start, end + 1), range);
    }
  });
});

Deno.test("serveCachedFile() honours If-Range only when it matches, else sends the whole file", async () => {
  await withCachedFile(async (file, data) => {
    const options = { origin: "Cache" as const, contentType: TYPE };
    for (const ifRange of [ETAG, MTIME_HTTP]) {
      const served = await serveCachedFile(
        request({ Range: "bytes=10-19", "If-Range": ifRange }),
        file,
        options,
      );
      assertEquals(served.response.status, 206, `If-Range: ${ifRange}`);
      assertEquals(await bytesOf(served.response), data.slice(10, 20));
    }
    for (const ifRange of ['"3e8-0"', "Tue, 14 Nov 2023 22:13:21 GMT", `W/${ETAG}`]) {
      const served = await serveCachedFile(
        request({ Range: "bytes=10-19", "If-Range": ifRange }),
        file,
        options,
      );
      assertEquals(served.response.status, 200, `If-Range: ${ifRange}`);
      assertEquals(served.response.headers.get("content-range"), null);
      assertEquals(served.response.headers.get("content-length"), String(SIZE));
      assertEquals(await bytesOf(served.response), data);
    }
  });
});

Deno.test("serveCachedFile() throws 416 with Content-Range for a range past the end", async () => {
  await withCachedFile(async (file) => {
    for (const range of ["bytes=1000-", "bytes=5000-6000", "bytes=-0"]) {
      await nodeAssert.rejects(
        async () =>
          await serveCachedFile(request({ Range: range }), file, { origin: "Cache", contentType: TYPE }),
        (error: unknown) => {
          assert(error instanceof HttpError, `${range}: an HttpError`);
          assertEquals(error.status, 416);
          assertEquals(error.headers.get("content-range"), "bytes */1000");
          return true;
        },
      );
    }
  });
});

Deno.test("serveCachedFile() answers HEAD with the headers only and without opening the file", async () => {
  await withCachedFile(async (file) => {
    const options = { origin: "Cache" as const, contentType: TYPE };
    const whole = await serveCachedFile(request({}, "HEAD"), file, options);
    assertEquals(whole.response.status, 200);
    assertEquals(whole.response.body, null);
    assertEquals(whole.response.headers.get("content-length"), String(SIZE));
    assertEquals(whole.bytes, 0);
    assertEquals(whole.readsFile, undefined);
    // Range is ignored on HEAD (RFC 9110 section 14.2).
    const ranged = await serveCachedFile(request({ Range: "bytes=0-9" }, "HEAD"), file, options);
    assertEquals(ranged.response.status, 200);
    assertEquals(ranged.response.body, null);
    assertEquals(ranged.response.headers.get("content-length"), String(SIZE));
    assertEquals(ranged.response.headers.get("content-range"), null);
  });
});

Deno.test("serveCachedFile() serves an empty file with an empty 200", async () => {
  await withCachedFile(async (file) => {
    await Deno.truncate(file.path, 0);
    const served = await serveCachedFile(request(), { ...file, size: 0 }, {
      origin: "Cache",
      contentType: TYPE,
    });
    assertEquals(served.response.status, 200);
    assertEquals(served.response.headers.get("content-length"), "0");
    assertEquals(served.response.body, null);
    assertEquals(served.readsFile, undefined);
  });
});

Deno.test("serveCachedFile() serves a file held in memory without reading the disk", async () => {
  const data = testBytes(SIZE, 2);
  const hot: HotFile = {
    path: "/nonexistent/flexo-test-file",
    size: SIZE,
    mtime: MTIME,
    bytes: data.slice(),
  };
  const served = await serveCachedFile(request({ Range: "bytes=-100" }), hot, {
    origin: "Cache",
    contentType: TYPE,
  });
  assertEquals(served.response.status, 206);
  assertEquals(served.response.headers.get("etag"), ETAG);
  assertEquals(served.readsFile, undefined);
  assertEquals(await bytesOf(served.response), data.slice(900));
});

/** A running download from a mirror answering 200 with `headers` and a body the test controls. */
async function liveDownload(
  dir: string,
  headers: Record<string, string>,
  expect?: { size: number; sha256: string },
): Promise<{ download: Download; head: DownloadHead; gate: Gate }> {
  const { fetch: fetchImpl, gate } = gatedMirror(headers);
  const download = startTestDownload(new CacheStore(dir), fetchImpl, {
    segments: ["core", "os", "x86_64", "zstd-1.5.6-1-x86_64.pkg.tar.zst"],
    mirrors: ["http://mirror-a.test/"],
    rules: { keepPartialOnFailure: true },
    expect,
  });
  const head = await download.head;
  return {
    download,
    head,
    gate,
  };
}

/**
 * Runs `fn` with a live download of `data` (Content-Length sent when `withLength`), then sends whatever is left
 * of the body and waits for the download to end.
 */
async function withLiveDownload(
  options: {
    data: Uint8Array;
    withLength: boolean;
    headers?: Record<string, string>;
    /** What the repository database says the file is (size and SHA-256), checked before its end is released. */
    expect?: { size: number; sha256: string };
  },
  fn: (live: { download: Download; head: DownloadHead; gate: Gate }) => Promise<void> | void,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-responses-" });
  try {
    const headers: Record<string, string> = { "last-modified": MTIME_HTTP, ...options.headers };
    if (options.withLength) headers["content-length"] = String(options.data.byteLength);
    const live = await liveDownload(dir, headers, options.expect);
    try {
      await fn(live);
    } finally {
      try {
        live.gate.push(options.data.slice(live.download.written));
        live.gate.end();
      } catch {
        // the test has ended the body already
      }
      await live.download.finished;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("serveDownload() answers 200 with Content-Length when the length is known", async () => {
  const data = testBytes(SIZE, 3);
  await withLiveDownload({ data, withLength: true }, async ({ download, head, gate }) => {
    let counted = 0;
    const served = serveDownload(request(), download, {
      head,
      contentType: TYPE,
      onBytes: (n) => (counted += n),
    });
    const { response } = served;
    assertEquals(response.status, 200);
    assertEquals(response.headers.get("content-length"), String(SIZE));
    assertEquals(response.headers.get("accept-ranges"), "bytes");
    assertEquals(response.headers.get("last-modified"), MTIME_HTTP);
    assertEquals(response.headers.get("content-type"), TYPE);
    assertEquals(response.headers.get(ORIGIN_HEADER), "RemoteMirror");
    assertEquals(response.headers.get("etag"), null, "a file still growing has no entity tag");
    assertEquals(served.bytes, SIZE);
    const body = bytesOf(response);
    gate.push(data);
    gate.end();
    assertEquals(await body, data);
    assertEquals(counted, SIZE);
  });
});

Deno.test("serveDownload() answers 200 without Content-Length when the length is unknown", async () => {
  const data = testBytes(SIZE, 4);
  await withLiveDownload({ data, withLength: false }, async ({ download, head, gate }) => {
    const served = serveDownload(request(), download, { head, contentType: TYPE });
    assertEquals(served.response.status, 200);
    assertEquals(served.response.headers.get("content-length"), null);
    assertEquals(served.bytes, 0, "nothing is known to be sent yet");
    const body = bytesOf(served.response);
    gate.push(data.slice(0, 400));
    gate.push(data.slice(400));
    gate.end();
    assertEquals(await body, data);
  });
});

Deno.test("serveDownload() serves a range of a live download as it comes, its last byte once the file is verified", async () => {
  const data = testBytes(SIZE, 5);
  await withLiveDownload({ data, withLength: true }, async ({ download, head, gate }) => {
    const served = serveDownload(request({ Range: "bytes=100-199" }), download, { head, contentType: TYPE });
    assertEquals(served.response.status, 206);
    assertEquals(served.response.headers.get("content-range"), `bytes 100-199/${SIZE}`);
    assertEquals(served.response.headers.get("content-length"), "100");
    assertEquals(served.bytes, 100);
    const reader = served.response.body!.getReader();
    gate.push(data.slice(0, 300));
    while (download.written < 300) await download.changed();
    const first = await reader.read();
    assertEquals(first.value, data.slice(100, 199), "all of the range but its last byte, before the end");
    assertEquals(fileBodyOf(served.response)!.growing!.releasable(), 199, "the same for sendfile");
    const last = reader.read();
    const tail = serveDownload(request({ Range: "bytes=900-5000" }), download, { head, contentType: TYPE });
    assertEquals(tail.response.headers.get("content-range"), `bytes 900-999/${SIZE}`);
    const tailBody = bytesOf(tail.response);
    gate.push(data.slice(300));
    gate.end();
    assertEquals(await tailBody, data.slice(900));
    assertEquals((await last).value, data.slice(199, 200));
    assertEquals((await reader.read()).done, true);
  });
});

Deno.test("serveDownload() never ends a range of a download that fails its check cleanly, even one short of the file's end", async () => {
  // A large file (above HOLD_WHOLE_MAX_BYTES): a small one releases no byte before its check.
  const size = 300_000;
  const data = testBytes(size, 11);
  const other = testBytes(size, 12);
  const sha256 = createHash("sha256").update(other).digest("hex");
  await withLiveDownload(
    { data, withLength: true, expect: { size, sha256 } },
    async ({ download, head, gate }) => {
      const served = serveDownload(request({ Range: "bytes=100-199" }), download, {
        head,
        contentType: TYPE,
      });
      assertEquals(served.response.status, 206);
      const body = bytesOf(served.response);
      gate.push(data.slice(0, 300));
      while (download.written < 300) await download.changed();
      assertEquals(
        fileBodyOf(served.response)!.growing!.releasable(),
        199,
        "sendfile holds the range's end too",
      );
      gate.push(data.slice(300));
      gate.end();
      await nodeAssert.rejects(body, /does not match the repository database/);
      assertEquals(download.outcome().type, "failed");
    },
  );
});

Deno.test("serveDownload() sends the whole file for a range while the length is unknown", async () => {
  const data = testBytes(SIZE, 6);
  await withLiveDownload({ data, withLength: false }, async ({ download, head, gate }) => {
    const served = serveDownload(request({ Range: "bytes=100-199" }), download, { head, contentType: TYPE });
    assertEquals(served.response.status, 200);
    assertEquals(served.response.headers.get("content-range"), null);
    const body = bytesOf(served.response);
    gate.push(data);
    gate.end();
    assertEquals(await body, data);
  });
});

Deno.test("serveDownload() throws 416 with Content-Range for a range past the announced end", async () => {
  const data = testBytes(SIZE, 7);
  await withLiveDownload({ data, withLength: true }, ({ download, head }) => {
    nodeAssert.throws(
      () => serveDownload(request({ Range: "bytes=1000-" }), download, { head, contentType: TYPE }),
      (error: unknown) => {
        assert(error instanceof HttpError);
        assertEquals(error.status, 416);
        assertEquals(error.headers.get("content-range"), "bytes */1000");
        return true;
      },
    );
  });
});

Deno.test("serveDownload() answers 304 when the upstream Last-Modified is not newer", async () => {
  const data = testBytes(SIZE, 8);
  await withLiveDownload({ data, withLength: true }, async ({ download, head }) => {
    const served = serveDownload(request({ "If-Modified-Since": MTIME_HTTP }), download, {
      head,
      contentType: TYPE,
    });
    assertEquals(served.response.status, 304);
    assertEquals(served.response.body, null);
    assertEquals(served.response.headers.get("last-modified"), MTIME_HTTP);
    assertEquals(served.response.headers.get("content-type"), null);
    assertEquals(served.bytes, 0);
    const older = serveDownload(request({ "If-Modified-Since": "Mon, 13 Nov 2023 00:00:00 GMT" }), download, {
      head,
      contentType: TYPE,
    });
    assertEquals(older.response.status, 200);
    await older.response.body?.cancel();
  });
});

Deno.test("serveDownload() answers HEAD with the headers only", async () => {
  const data = testBytes(SIZE, 9);
  await withLiveDownload({ data, withLength: true }, ({ download, head }) => {
    const served = serveDownload(request({}, "HEAD"), download, { head, contentType: TYPE });
    assertEquals(served.response.status, 200);
    assertEquals(served.response.body, null);
    assertEquals(served.response.headers.get("content-length"), String(SIZE));
    assertEquals(served.bytes, 0);
  });
});

Deno.test("serveDownload() says the file name's content type, as the cached file's answers will, not the mirror's", async () => {
  // A mirror's type (application/x-zstd here, application/octet-stream or none from others) must not make the
  // file's type change once it is cached, nor from mirror to mirror.
  const data = testBytes(SIZE, 10);
  await withLiveDownload(
    { data, withLength: true, headers: { "content-type": "application/x-zstd" } },
    ({ download, head }) => {
      const served = serveDownload(request({}, "HEAD"), download, { head, contentType: TYPE });
      assertEquals(served.response.headers.get("content-type"), TYPE);
    },
  );
});

Deno.test("contentTypeFor() marks signatures and calls everything else a byte stream", () => {
  const cases: [string, string][] = [
    ["zstd-1.5.6-1-x86_64.pkg.tar.zst.sig", "application/pgp-signature"],
    ["core.db.sig", "application/pgp-signature"],
    ["zstd-1.5.6-1-x86_64.pkg.tar.zst", "application/octet-stream"],
    ["core.db", "application/octet-stream"],
    ["core.files.tar.gz", "application/octet-stream"],
    ["sig", "application/octet-stream"],
    ["", "application/octet-stream"],
  ];
  for (const [name, expected] of cases) {
    assertEquals(contentTypeFor(name), expected, `contentTypeFor("${name}")`);
  }
});
