/**
 * The one HTTP-date parser (RFC 9110 section 5.6.7): the three forms, impossible dates, and years taken as the
 * grammar says (finding 10 of issue 16: four-digit years 0000 to 0099 were read as 1900 to 1999).
 */

import assert from "node:assert/strict";
import { parseHttpDate } from "../../src/http/dates.ts";

/** 2026-06-01, the clock these tests give the parser. */
const NOW = Date.UTC(2026, 5, 1);

Deno.test("parseHttpDate() reads the three HTTP date forms as UTC", () => {
  const expected = Date.UTC(1994, 10, 6, 8, 49, 37);
  for (
    const text of [
      "Sun, 06 Nov 1994 08:49:37 GMT",
      "Sunday, 06-Nov-94 08:49:37 GMT",
      "Sun Nov  6 08:49:37 1994",
      "  Sun, 06 Nov 1994 08:49:37 GMT  ",
    ]
  ) {
    assert.equal(parseHttpDate(text, NOW)?.getTime(), expected, text);
  }
  assert.equal(parseHttpDate("Tue, 14 Nov 2023 22:13:20 GMT")?.getTime(), 1_700_000_000_000);
  assert.equal(parseHttpDate("Thu, 01 Jan 1970 00:00:00 GMT")?.getTime(), 0);
  assert.equal(parseHttpDate("Sat, 29 Feb 2020 23:59:59 GMT")?.getTime(), Date.UTC(2020, 1, 29, 23, 59, 59));
});

Deno.test("parseHttpDate() takes a four-digit year as it is, 0000 to 0099 included", () => {
  for (const year of [0, 1, 50, 99, 100, 999]) {
    const text = `Mon, 01 Jan ${String(year).padStart(4, "0")} 00:00:00 GMT`;
    const date = new Date(0);
    date.setUTCFullYear(year, 0, 1);
    assert.equal(parseHttpDate(text, NOW)?.getUTCFullYear(), year, text);
    assert.equal(parseHttpDate(text, NOW)?.getTime(), date.getTime(), text);
    const asctime = `Mon Jan  1 00:00:00 ${String(year).padStart(4, "0")}`;
    assert.equal(parseHttpDate(asctime, NOW)?.getUTCFullYear(), year, asctime);
  }
  // 29 February exists in the year 0 (a leap year), not in 100.
  assert.equal(parseHttpDate("Tue, 29 Feb 0000 00:00:00 GMT", NOW)?.getUTCDate(), 29);
  assert.equal(parseHttpDate("Mon, 29 Feb 0100 00:00:00 GMT", NOW), undefined);
});

Deno.test("parseHttpDate() puts a two-digit RFC 850 year at most 50 years after now", () => {
  const cases: [string, number][] = [["26", 2026], ["76", 2076], ["77", 1977], ["99", 1999], ["00", 2000]];
  for (const [yy, year] of cases) {
    assert.equal(parseHttpDate(`Friday, 01-Jan-${yy} 00:00:00 GMT`, NOW)?.getUTCFullYear(), year, yy);
  }
  // Another clock, another century.
  const in1960 = Date.UTC(1960, 0, 1);
  assert.equal(parseHttpDate("Friday, 01-Jan-99 00:00:00 GMT", in1960)?.getUTCFullYear(), 1999);
  assert.equal(parseHttpDate("Friday, 01-Jan-11 00:00:00 GMT", in1960)?.getUTCFullYear(), 1911);
});

Deno.test("parseHttpDate() rejects what is not an HTTP date", () => {
  for (
    const text of [
      null,
      "",
      "12",
      "foo 12",
      "yesterday",
      "2024-05-01T12:00:00Z",
      "Sun, 06 Nov 1994 08:49:37",
      "Sun, 06 Nov 1994 08:49:37 gmt",
      "Sun, 06 Nov 1994 08:49:37 UTC",
      "Sun, 06 Nov 1994 08:49:37 GMT extra",
      "sun, 06 Nov 1994 08:49:37 GMT",
      "Sun, 6 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 94 08:49:37 GMT",
      "Sun, 06 nov 1994 08:49:37 GMT",
      "Sun, 31 Feb 2024 08:49:37 GMT",
      "Thu, 29 Feb 2024 24:00:00 GMT",
      "Sun, 06 Nov 1994 08:60:37 GMT",
      "Sun, 00 Nov 1994 08:49:37 GMT",
      "Tue, 99 Nov 2023 22:13:20 GMT",
      "Sunday, 06-Nov-1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",
    ]
  ) {
    assert.equal(parseHttpDate(text, NOW), undefined, String(text));
  }
});
