import assert from "node:assert/strict";
import { CacheStore } from "../../src/cache/cache_store.ts";
import {
  type AcceptOptions,
  acceptResponse,
  findResumePoint,
  MAX_FILE_SIZE,
  requestHeaders,
} from "../../src/download/partial_resume.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const SEGMENTS = ["core", "os", "x86_64", "a-1-1-any.pkg.tar.zst"];
const PACKAGE = { resumeAcrossMirrors: true };
const DATABASE = { resumeAcrossMirrors: false };

Deno.test("findResumePoint() continues a partial file within its recorded total", async () => {
  await withTempDir(async (dir) => {
    const store = new CacheStore(dir);
    assert.deepEqual(
      await findResumePoint(store, SEGMENTS, PACKAGE),
      { meta: {}, written: 0, noRecord: true },
      "no partial file",
    );
    const file = await store.openPartial(SEGMENTS, { truncate: true });
    await file.write(new Uint8Array(300));
    file.close();
    assert.deepEqual(
      await findResumePoint(store, SEGMENTS, PACKAGE),
      { meta: {}, written: 0, noRecord: true },
      "no record",
    );
    const meta = {
      total: 1000,
      lastModified: 1_700_000_000_000,
      mirror: "http://a.test/",
    };
    await store.writePartialMeta(SEGMENTS, meta);
    assert.deepEqual(await findResumePoint(store, SEGMENTS, PACKAGE), {
      meta,
      written: 300,
      total: 1000,
      noRecord: false,
    });
    assert.deepEqual(
      await findResumePoint(store, SEGMENTS, DATABASE),
      { meta: {}, written: 0, noRecord: false },
      "only files whose bytes may come from any mirror resume (the record is not looked for)",
    );
    assert.deepEqual(
      await findResumePoint(store, SEGMENTS, { ...PACKAGE, ifModifiedSince: 1 }),
      { meta: {}, written: 0, noRecord: false },
      "a conditional request starts over",
    );
    await store.writePartialMeta(SEGMENTS, { total: 200 });
    assert.deepEqual(
      await findResumePoint(store, SEGMENTS, PACKAGE),
      { meta: {}, written: 0, noRecord: false },
      "a partial file longer than its total starts over (its record is there, for the commit to remove)",
    );
  });
});

Deno.test("requestHeaders() asks for the rest, or for a newer file, carrying the client's Via", () => {
  const lastModified = Date.UTC(2024, 4, 14, 10);
  const headers = (written: number, options: Parameters<typeof requestHeaders>[2]) =>
    Object.fromEntries(requestHeaders(written, { lastModified }, options));
  assert.deepEqual(headers(0, PACKAGE), {});
  assert.deepEqual(headers(500, PACKAGE), { range: "bytes=500-" });
  assert.deepEqual(headers(500, DATABASE), {
    range: "bytes=500-",
    "if-range": "Tue, 14 May 2024 10:00:00 GMT",
  });
  assert.deepEqual(headers(0, { ...DATABASE, ifModifiedSince: lastModified }), {
    "if-modified-since": "Tue, 14 May 2024 10:00:00 GMT",
  });
  assert.deepEqual(Object.fromEntries(requestHeaders(500, {}, DATABASE)), { range: "bytes=500-" }, "no date");
  // The Via of the client that started the download goes along (the fetch adds this node's name after it).
  assert.deepEqual(Object.fromEntries(requestHeaders(0, {}, PACKAGE, "1.1 site-1")), { via: "1.1 site-1" });
});

function response(status: number, headers: Record<string, string>): Response {
  return new Response(null, { status, headers });
}

const OPTIONS: AcceptOptions = { meta: {}, upstreamPath: SEGMENTS.join("/"), resumeAcrossMirrors: true };

Deno.test("acceptResponse() takes a 200 from the start and a 206 that continues the file", () => {
  assert.deepEqual(
    acceptResponse(response(200, { "content-length": "1000" }), { written: 0 }, OPTIONS),
    { type: "accepted", skip: 0, total: 1000 },
  );
  assert.deepEqual(acceptResponse(response(200, {}), { written: 0 }, OPTIONS), {
    type: "accepted",
    skip: 0,
    total: undefined,
  });
  assert.deepEqual(
    acceptResponse(response(206, { "content-range": "bytes 300-999/1000" }), { written: 300 }, OPTIONS),
    { type: "accepted", skip: 0, total: 1000 },
  );
  assert.deepEqual(
    acceptResponse(
      response(206, { "content-range": "bytes 300-999/*" }),
      { written: 300, total: 1000 },
      OPTIONS,
    ),
    { type: "accepted", skip: 0, total: 1000 },
    "an unknown total keeps the known one",
  );
  assert.deepEqual(
    acceptResponse(response(206, { "content-range": "bytes 200-999/1000" }), { written: 300 }, OPTIONS),
    { type: "unusable", reason: "sent the wrong range (bytes 200-999/1000)" },
  );
  assert.deepEqual(
    acceptResponse(
      response(206, { "content-range": "bytes 300-1999/2000" }),
      { written: 300, total: 1000 },
      OPTIONS,
    ),
    { type: "unusable", reason: "announced 2000 bytes instead of 1000", otherLength: true },
  );
});

Deno.test("acceptResponse() skips ahead in a 200 to a Range request only when it is the same file", () => {
  const progress = { written: 300, total: 1000 };
  assert.deepEqual(acceptResponse(response(200, { "content-length": "1000" }), progress, OPTIONS), {
    type: "accepted",
    skip: 300,
    total: 1000,
  });
  for (const [length, meta] of [["999", {}], [undefined, {}], ["1000", { total: 1001 }]] as const) {
    const headers: Record<string, string> = length === undefined ? {} : { "content-length": length };
    const answer = acceptResponse(response(200, headers), {
      written: 300,
      total: meta.total ? undefined : 1000,
    }, {
      ...OPTIONS,
      meta,
    });
    assert.equal(answer.type, "unusable", `length ${length}`);
    assert.match(answer.type === "unusable" ? answer.reason : "", /^ignored the Range request and sent/);
  }
  assert.deepEqual(
    acceptResponse(response(200, { "content-length": "1000" }), progress, {
      ...OPTIONS,
      resumeAcrossMirrors: false,
    }),
    {
      type: "changed_upstream",
      reason: "core/os/x86_64/a-1-1-any.pkg.tar.zst changed upstream during the transfer; retry the request",
    },
  );
});

Deno.test("acceptResponse() refuses absurd lengths, lengths the database contradicts and HTML pages", () => {
  const huge = String(MAX_FILE_SIZE + 1);
  assert.deepEqual(
    acceptResponse(response(200, { "content-length": huge }), { written: 0 }, OPTIONS),
    { type: "unusable", reason: `announced an absurd length of ${huge} bytes` },
  );
  const expect = { size: 1000, sha256: "ab".repeat(32) };
  assert.deepEqual(
    acceptResponse(response(200, { "content-length": "999" }), { written: 0 }, { ...OPTIONS, expect }),
    { type: "unusable", reason: "announced 999 bytes but the repository database says 1000" },
  );
  assert.deepEqual(
    acceptResponse(response(206, { "content-range": "bytes 10-998/999" }), { written: 10 }, {
      ...OPTIONS,
      expect,
    }),
    { type: "unusable", reason: "announced 999 bytes but the repository database says 1000" },
  );
  const html = response(200, { "content-type": "text/html; charset=utf-8", "content-length": "10" });
  assert.deepEqual(acceptResponse(html, { written: 0 }, OPTIONS), {
    type: "unusable",
    reason: "sent an HTML page instead of the file",
  });
  assert.deepEqual(
    acceptResponse(html, { written: 0 }, { ...OPTIONS, upstreamPath: "iso/latest/index.html" }),
    { type: "accepted", skip: 0, total: 10 },
    "an HTML file is fine",
  );
});

Deno.test("acceptResponse() takes a 200 from the start only of the length clients were told, if any", () => {
  const told = { written: 0, total: 1000 };
  assert.deepEqual(acceptResponse(response(200, { "content-length": "1000" }), told, OPTIONS), {
    type: "accepted",
    skip: 0,
    total: 1000,
  });
  assert.deepEqual(acceptResponse(response(200, { "content-length": "1200" }), told, OPTIONS), {
    type: "unusable",
    reason: "announced 1200 bytes instead of 1000",
  });
  assert.deepEqual(
    acceptResponse(response(200, {}), told, OPTIONS),
    { type: "accepted", skip: 0, total: 1000 },
    "no length keeps the known one",
  );
});
