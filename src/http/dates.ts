/**
 * The one parser of HTTP dates (RFC 9110 section 5.6.7), for conditional requests and mirrors' `Last-Modified`.
 *
 * @module
 */

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const MONTH = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
const TIME = "(\\d{2}):(\\d{2}):(\\d{2})";
const IMF_FIXDATE_RE = new RegExp(
  `^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`,
);
const RFC850_RE = new RegExp(
  `^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`,
);
const ASCTIME_RE = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`);

/**
 * Parses an HTTP-date (RFC 9110 section 5.6.7) in any of its three forms: IMF-fixdate
 * (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
 * (`Sun Nov  6 08:49:37 1994`). All are UTC. Returns undefined for anything else (null included), and for
 * impossible dates. Four-digit years are taken as they are (`0099` is the year 99); a two-digit RFC 850 year is
 * taken in the century that puts it at most 50 years after `now` (milliseconds; default: the system clock),
 * as the RFC requires.
 */
export function parseHttpDate(value: string | null, now: number = Date.now()): Date | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  let day: string, month: string, year: number, hh: string, mm: string, ss: string;
  let m: RegExpExecArray | null;
  if ((m = IMF_FIXDATE_RE.exec(text))) {
    [, day, month, , hh, mm, ss] = m;
    year = Number(m[3]);
  } else if ((m = RFC850_RE.exec(text))) {
    [, day, month, , hh, mm, ss] = m;
    year = twoDigitYear(Number(m[3]), now);
  } else if ((m = ASCTIME_RE.exec(text))) {
    [, month, day, hh, mm, ss] = m;
    year = Number(m[6]);
  } else {
    return undefined;
  }
  const monthIndex = MONTHS.indexOf(month);
  const d = Number(day.trim()), h = Number(hh), min = Number(mm), s = Number(ss);
  if (d < 1 || h > 23 || min > 59 || s > 60) return undefined;
  // Date.UTC() would take the years 0 to 99 as 1900 to 1999: the year is set apart.
  const date = new Date(Date.UTC(2000, monthIndex, d, h, min, s));
  date.setUTCFullYear(year, monthIndex, d);
  if (date.getUTCDate() !== d) return undefined; // e.g. 31 Feb
  return date;
}

function twoDigitYear(yy: number, now: number): number {
  const thisYear = new Date(now).getUTCFullYear();
  let year = Math.floor(thisYear / 100) * 100 + yy;
  if (year > thisYear + 50) year -= 100;
  return year;
}
