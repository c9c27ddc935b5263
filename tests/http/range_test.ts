import assert from "node:assert/strict";
import {
  contentRange,
  ifRangeMatches,
  isNotModified,
  makeEtag,
  parseRange,
  type RangeResult,
  unsatisfiedRange,
  type Validators,
} from "../../src/http/range.ts";

const NONE: RangeResult = { type: "none" };
const IGNORE: RangeResult = { type: "ignore" };
const UNSAT: RangeResult = { type: "unsatisfiable" };
const range = (start: number, end: number): RangeResult => ({ type: "range", start, end });

function checkTable(size: number | undefined, table: [string | null, RangeResult][]): void {
  for (const [header, expected] of table) {
    assert.deepEqual(parseRange(header, size), expected, `${JSON.stringify(header)} with size ${size}`);
  }
}

Deno.test("parseRange() reads single byte ranges of a known size", () => {
  checkTable(100, [
    [null, NONE],
    ["bytes=0-0", range(0, 0)],
    ["bytes=0-99", range(0, 99)],
    ["bytes=10-20", range(10, 20)],
    ["bytes=5-5", range(5, 5)],
    ["bytes=0-", range(0, 99)],
    ["bytes=50-", range(50, 99)],
    ["bytes=99-", range(99, 99)],
    ["bytes=99-99", range(99, 99)],
    ["bytes=007-010", range(7, 10)],
    // end clamped to size - 1
    ["bytes=0-100", range(0, 99)],
    ["bytes=0-1000", range(0, 99)],
    ["bytes=90-99999999999999999999", range(90, 99)],
    // suffix ranges
    ["bytes=-1", range(99, 99)],
    ["bytes=-10", range(90, 99)],
    ["bytes=-100", range(0, 99)],
    ["bytes=-101", range(0, 99)],
    ["bytes=-99999999999999999999", range(0, 99)],
  ]);
});

Deno.test("parseRange() tolerates whitespace at the ends and around commas, unit case and empty list elements", () => {
  checkTable(100, [
    ["  bytes=5-10  ", range(5, 10)],
    ["bytes=\t5-10\t", range(5, 10)],
    ["bytes= -10", range(90, 99)],
    ["bytes=5-10,", range(5, 10)],
    ["bytes=, 5-10 ,", range(5, 10)],
    ["BYTES=5-10", range(5, 10)],
    ["Bytes=5-", range(5, 99)],
  ]);
});

Deno.test("parseRange() ignores whitespace inside a range-spec or around = (RFC 9110 section 14.1.1)", () => {
  checkTable(100, [
    ["bytes = 5-10", IGNORE],
    ["bytes =5-10", IGNORE],
    ["bytes= 5 -10", IGNORE],
    ["bytes=5 - 10", IGNORE],
    ["bytes=5- 10", IGNORE],
    ["bytes=- 10", IGNORE],
    ["bytes=5\t-10", IGNORE],
    ["bytes=5-1 0", IGNORE],
  ]);
});

Deno.test("parseRange() ignores malformed, foreign and multiple ranges", () => {
  checkTable(100, [
    ["", IGNORE],
    ["   ", IGNORE],
    ["bytes", IGNORE],
    ["bytes=", IGNORE],
    ["bytes=,", IGNORE],
    ["bytes=-", IGNORE],
    ["bytes=a-b", IGNORE],
    ["bytes=1-a", IGNORE],
    ["bytes=1.5-2", IGNORE],
    ["bytes=+1-2", IGNORE],
    ["bytes=-+1", IGNORE],
    ["bytes=1e2-", IGNORE],
    ["bytes=0x10-", IGNORE],
    ["bytes=--1", IGNORE],
    ["bytes=1-2-3", IGNORE],
    ["bytes=1--2", IGNORE],
    ["bytes=1 2-3", IGNORE],
    ["bytes 0-1", IGNORE],
    ["bytes:0-1", IGNORE],
    ["bytes=0-1=2", IGNORE],
    ["bits=0-1", IGNORE],
    ["items=0-1", IGNORE],
    ["=0-1", IGNORE],
    // first > last makes the whole field invalid
    ["bytes=5-4", IGNORE],
    ["bytes=100-0", IGNORE],
    // more than one range: served whole with 200
    ["bytes=0-1,2-3", IGNORE],
    ["bytes=0-1, 5-", IGNORE],
    ["bytes=0-1,0-1", IGNORE],
    ["bytes=-1,-2", IGNORE],
    ["bytes=500-600,0-1", IGNORE],
  ]);
});

Deno.test("parseRange() marks ranges beyond the end and -0 as unsatisfiable", () => {
  checkTable(100, [
    ["bytes=100-", UNSAT],
    ["bytes=100-100", UNSAT],
    ["bytes=100-200", UNSAT],
    ["bytes=1000-", UNSAT],
    ["bytes=99999999999999999999-", UNSAT],
    ["bytes=-0", UNSAT],
    ["bytes=-000", UNSAT],
  ]);
});

Deno.test("parseRange() handles empty and one-byte files", () => {
  checkTable(0, [
    [null, NONE],
    ["bytes=0-", UNSAT],
    ["bytes=0-0", UNSAT],
    ["bytes=0-10", UNSAT],
    ["bytes=-0", UNSAT],
    ["bytes=-1", IGNORE],
    ["bytes=-100", IGNORE],
    ["bytes=0-1,2-3", IGNORE],
  ]);
  checkTable(1, [
    ["bytes=0-0", range(0, 0)],
    ["bytes=0-", range(0, 0)],
    ["bytes=0-5", range(0, 0)],
    ["bytes=1-", UNSAT],
    ["bytes=1-1", UNSAT],
    ["bytes=-1", range(0, 0)],
    ["bytes=-5", range(0, 0)],
    ["bytes=-0", UNSAT],
  ]);
});

Deno.test("parseRange() with an unknown size keeps a-b and a-, ignores suffixes", () => {
  checkTable(undefined, [
    [null, NONE],
    ["bytes=0-", range(0, Infinity)],
    ["bytes=10-", range(10, Infinity)],
    ["bytes=10-20", range(10, 20)],
    ["bytes=0-0", range(0, 0)],
    ["bytes=1000000000-", range(1000000000, Infinity)],
    ["bytes=0-99999999999999999999", range(0, Infinity)],
    ["bytes=99999999999999999999-", IGNORE],
    ["bytes=-10", IGNORE],
    ["bytes=-0", IGNORE],
    ["bytes=20-10", IGNORE],
    ["bytes=0-1,2-3", IGNORE],
    ["garbage", IGNORE],
  ]);
});

Deno.test("parseRange() rejects an invalid size as a caller bug", () => {
  for (const size of [-1, 1.5, NaN, Infinity, 2 ** 60]) {
    assert.throws(() => parseRange("bytes=0-", size), TypeError, String(size));
  }
});

Deno.test("contentRange() and unsatisfiedRange() format Content-Range values", () => {
  assert.equal(contentRange(0, 99, 100), "bytes 0-99/100");
  assert.equal(contentRange(5, 5, 6), "bytes 5-5/6");
  assert.equal(contentRange(0, 0, 1), "bytes 0-0/1");
  assert.equal(contentRange(10, 20), "bytes 10-20/*");
  assert.equal(contentRange(10, 20, undefined), "bytes 10-20/*");
  assert.equal(unsatisfiedRange(100), "bytes */100");
  assert.equal(unsatisfiedRange(0), "bytes */0");
  for (const [start, end, size] of [[5, 4, 10], [0, 10, 10], [0, Infinity, 10], [-1, 2, 10], [0.5, 2, 10]]) {
    assert.throws(() => contentRange(start, end, size), RangeError, `${start}-${end}/${size}`);
  }
  assert.throws(() => contentRange(0, Infinity), RangeError);
});

Deno.test("makeEtag() builds a strong tag that changes with size and mtime", () => {
  const mtime = new Date("2024-05-01T12:00:00.750Z");
  const etag = makeEtag(1234, mtime);
  assert.match(etag, /^"[0-9a-f]+-[0-9a-f]+"$/);
  assert.equal(makeEtag(1234, new Date(mtime.getTime())), etag);
  assert.notEqual(makeEtag(1235, mtime), etag);
  assert.notEqual(makeEtag(1234, new Date(mtime.getTime() + 1)), etag);
  assert.notEqual(makeEtag(0, new Date(0)), makeEtag(1, new Date(0)));
  assert.throws(() => makeEtag(1, new Date("nope")), TypeError);
  assert.throws(() => makeEtag(-1, mtime), TypeError);
});

const MTIME = new Date("2024-05-01T12:00:00.750Z");
const ETAG = makeEtag(1234, MTIME);
const VALIDATORS: Validators = { lastModified: MTIME, etag: ETAG };
const SAME_SECOND = "Wed, 01 May 2024 12:00:00 GMT";
const SECOND_BEFORE = "Wed, 01 May 2024 11:59:59 GMT";
const SECOND_AFTER = "Wed, 01 May 2024 12:00:01 GMT";

function request(headers: Record<string, string>, method = "GET"): Request {
  return new Request("http://127.0.0.1/core/os/x86_64/a.pkg.tar.zst", { method, headers });
}

Deno.test("isNotModified() follows RFC 9110 precedence and compares dates in seconds", () => {
  const table: [string, Record<string, string>, Validators, boolean, string?][] = [
    ["no conditional headers", {}, VALIDATORS, false],
    ["If-None-Match equal", { "if-none-match": ETAG }, VALIDATORS, true],
    ["If-None-Match weak form of the tag", { "if-none-match": `W/${ETAG}` }, VALIDATORS, true],
    ["If-None-Match other tag", { "if-none-match": '"other"' }, VALIDATORS, false],
    ["If-None-Match list containing the tag", { "if-none-match": `"x", W/"y", ${ETAG}` }, VALIDATORS, true],
    ["If-None-Match list without spaces", { "if-none-match": `"x",${ETAG}` }, VALIDATORS, true],
    ["If-None-Match list with a comma inside a tag", { "if-none-match": `"a,b", ${ETAG}` }, VALIDATORS, true],
    ["If-None-Match list not containing the tag", { "if-none-match": '"x", "y"' }, VALIDATORS, false],
    ["If-None-Match *", { "if-none-match": "*" }, VALIDATORS, true],
    ["If-None-Match unquoted", { "if-none-match": ETAG.slice(1, -1) }, VALIDATORS, false],
    ["If-None-Match garbage", { "if-none-match": "garbage" }, VALIDATORS, false],
    ["If-None-Match tag followed by junk", { "if-none-match": `${ETAG}x` }, VALIDATORS, false],
    ["If-None-Match junk member then the tag", { "if-none-match": `"a"x, ${ETAG}` }, VALIDATORS, true],
    ["If-None-Match empty", { "if-none-match": "" }, VALIDATORS, false],
    ["If-None-Match but no etag known", { "if-none-match": ETAG }, { lastModified: MTIME }, false],
    ["weak own etag, weak comparison", { "if-none-match": '"abc"' }, { etag: 'W/"abc"' }, true],
    // If-None-Match takes precedence over If-Modified-Since
    [
      "If-None-Match mismatch wins over a fresh If-Modified-Since",
      { "if-none-match": '"other"', "if-modified-since": SECOND_AFTER },
      VALIDATORS,
      false,
    ],
    [
      "If-None-Match match wins over a stale If-Modified-Since",
      { "if-none-match": ETAG, "if-modified-since": SECOND_BEFORE },
      VALIDATORS,
      true,
    ],
    [
      "If-None-Match present without own etag ignores If-Modified-Since",
      { "if-none-match": ETAG, "if-modified-since": SECOND_AFTER },
      { lastModified: MTIME },
      false,
    ],
    // If-Modified-Since, second precision (MTIME has .750 ms)
    ["If-Modified-Since same second", { "if-modified-since": SAME_SECOND }, VALIDATORS, true],
    ["If-Modified-Since a second later", { "if-modified-since": SECOND_AFTER }, VALIDATORS, true],
    ["If-Modified-Since a second earlier", { "if-modified-since": SECOND_BEFORE }, VALIDATORS, false],
    [
      "If-Modified-Since RFC 850 form",
      { "if-modified-since": "Wednesday, 01-May-24 12:00:00 GMT" },
      VALIDATORS,
      true,
    ],
    ["If-Modified-Since asctime form", { "if-modified-since": "Wed May  1 12:00:00 2024" }, VALIDATORS, true],
    ["If-Modified-Since invalid", { "if-modified-since": "yesterday" }, VALIDATORS, false],
    [
      "If-Modified-Since ISO date is not an HTTP date",
      { "if-modified-since": "2024-05-02T00:00:00Z" },
      VALIDATORS,
      false,
    ],
    ["If-Modified-Since without lastModified", { "if-modified-since": SECOND_AFTER }, { etag: ETAG }, false],
    ["If-Modified-Since with invalid lastModified", { "if-modified-since": SECOND_AFTER }, {
      lastModified: new Date(NaN),
    }, false],
  ];
  for (const [name, headers, validators, expected] of table) {
    assert.equal(isNotModified(request(headers), validators), expected, name);
  }
});

Deno.test("isNotModified() only answers 304 for GET and HEAD", () => {
  assert.equal(isNotModified(request({ "if-none-match": ETAG }, "HEAD"), VALIDATORS), true);
  assert.equal(isNotModified(request({ "if-modified-since": SECOND_AFTER }, "HEAD"), VALIDATORS), true);
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
    assert.equal(isNotModified(request({ "if-none-match": ETAG }, method), VALIDATORS), false, method);
    assert.equal(
      isNotModified(request({ "if-modified-since": SECOND_AFTER }, method), VALIDATORS),
      false,
      method,
    );
  }
});

Deno.test("ifRangeMatches() needs a strong tag match or the exact second", () => {
  const table: [string, Record<string, string>, Validators, boolean][] = [
    ["absent", {}, VALIDATORS, true],
    ["absent without validators", {}, {}, true],
    ["same strong tag", { "if-range": ETAG }, VALIDATORS, true],
    ["same strong tag with spaces", { "if-range": ` ${ETAG} ` }, VALIDATORS, true],
    ["weak form of the tag", { "if-range": `W/${ETAG}` }, VALIDATORS, false],
    ["other tag", { "if-range": '"other"' }, VALIDATORS, false],
    ["two tags", { "if-range": `${ETAG}, ${ETAG}` }, VALIDATORS, false],
    ["own etag weak", { "if-range": '"abc"' }, { etag: 'W/"abc"' }, false],
    ["tag but no own etag", { "if-range": ETAG }, { lastModified: MTIME }, false],
    ["same second", { "if-range": SAME_SECOND }, VALIDATORS, true],
    ["same second, asctime", { "if-range": "Wed May  1 12:00:00 2024" }, VALIDATORS, true],
    ["a second later", { "if-range": SECOND_AFTER }, VALIDATORS, false],
    ["a second earlier", { "if-range": SECOND_BEFORE }, VALIDATORS, false],
    ["date but no lastModified", { "if-range": SAME_SECOND }, { etag: ETAG }, false],
    ["invalid date", { "if-range": "yesterday" }, VALIDATORS, false],
    ["empty", { "if-range": "" }, VALIDATORS, false],
  ];
  for (const [name, headers, validators, expected] of table) {
    assert.equal(ifRangeMatches(request(headers), validators), expected, name);
  }
});
