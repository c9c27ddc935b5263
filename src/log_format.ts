/**
 * A cheap text formatter for log records: the same lines as logtape's `getTextFormatter` with
 * `{ timestamp: "date-time-tz" | "none", category: ".", value: "bare" }` (`2026-12-04 22:48:38.123 +00 [INF]
 * flexo.request: GET /core/... CACHE HIT 200 ...`), made for the request log's rate: the timestamp's date and time
 * up to the second is made once per second, strings and numbers are written as they are (only other values go
 * through `Deno.inspect`), passwords in URLs are hidden, and control characters in strings are escaped (`\n`, `\x1b`, `\x9b`) so that no client-given
 * text can forge a line or a terminal sequence.
 *
 * @module
 */

import type { LogLevel, LogRecord } from "@logtape/logtape";
import { redactUrls } from "./redact_url.ts";

const LEVELS: Record<LogLevel, string> = {
  trace: "TRC",
  debug: "DBG",
  info: "INF",
  warning: "WRN",
  error: "ERR",
  fatal: "FTL",
};

/**
 * C0 controls, DEL and the C1 controls U+0080-U+009F: terminals read those as escape sequences too (U+009B is
 * ESC [), and a client's header value may hold them (bytes 0x80-0x9F, as the code units of a Via, say).
 */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;
// deno-lint-ignore no-control-regex
const CONTROLS = /[\x00-\x1f\x7f-\x9f]/g;

/**
 * The syslog priority of each level (sd-daemon(3)): journald takes a line's leading `<N>` on a service's stderr as
 * its priority, so that `journalctl -p warning` and the journal's highlighting see flexo's levels.
 */
const PRIORITIES: Record<LogLevel, string> = {
  trace: "<7>",
  debug: "<7>",
  info: "<6>",
  warning: "<4>",
  error: "<3>",
  fatal: "<2>",
};

/** Turns a log record into one line of text, ending in `\n`. */
export type LineFormatter = (record: LogRecord) => string;

/**
 * A formatter; `timestamps: false` leaves them out (the journal adds its own), `priorities: true` starts each
 * line with its level's syslog priority for the journal (see {@linkcode PRIORITIES}).
 */
export function cheapTextFormatter(options: { timestamps: boolean; priorities?: boolean }): LineFormatter {
  // The text up to the second, for the second it was made for: one Date per second, not per line.
  let second = Number.NaN;
  let prefix = "";
  const stamp = (ms: number): string => {
    const now = Math.floor(ms / 1000);
    if (now !== second) {
      second = now;
      // 2026-12-04T22:48:38.000Z -> "2026-12-04 22:48:38."
      prefix = new Date(now * 1000).toISOString().slice(0, 20).replace("T", " ");
    }
    const millis = Math.floor(ms) - now * 1000;
    return `${prefix}${millis < 10 ? "00" : millis < 100 ? "0" : ""}${millis} +00 `;
  };
  return (record) => {
    const parts = record.message;
    let message = "";
    for (let i = 0; i < parts.length; i++) {
      message += i % 2 === 0 ? clean(parts[i] as string) : bare(parts[i]);
    }
    const head = (options.priorities ? PRIORITIES[record.level] : "") +
      (options.timestamps ? stamp(record.timestamp) : "");
    return `${head}[${LEVELS[record.level]}] ${record.category.join(".")}: ${message}\n`;
  };
}

function bare(value: unknown): string {
  if (typeof value === "string") return clean(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return clean(Deno.inspect(value));
}

function clean(raw: string): string {
  // A mirror's URL may carry a password: no line shows it (see redact_url.ts).
  const text = redactUrls(raw);
  if (!CONTROL.test(text)) return text;
  return text.replace(CONTROLS, (char) => {
    if (char === "\n") return "\\n";
    if (char === "\r") return "\\r";
    if (char === "\t") return "\t";
    return `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}
