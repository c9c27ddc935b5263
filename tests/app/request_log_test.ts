/**
 * The request log: one line per answer with the client a trusted proxy named, on both ways to the output.
 */

import { assertEquals } from "../helpers/assert.ts";
import { AnswerLog, type AnswerRecord } from "../../src/app/request_log.ts";
import { Stats } from "../../src/status/stats.ts";
import { cheapTextFormatter } from "../../src/log_format.ts";
import type { LogLevel } from "@logtape/logtape";

const ANSWER: AnswerRecord = {
  method: "GET",
  path: "/core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst",
  result: "CACHE HIT",
  status: 200,
  bytes: 1234,
  ms: 3,
  whole: true,
};

/** An output as setupLogging gives it, formatting lines as the log sink does. */
function output() {
  const lines: string[] = [];
  const format = cheapTextFormatter({ timestamps: false });
  return {
    lines,
    enabled: (_level: LogLevel) => true,
    line(category: readonly string[], level: LogLevel, message: readonly unknown[]) {
      lines.push(format({ category, level, message, rawMessage: "", timestamp: 0, properties: {} }));
    },
  };
}

Deno.test("AnswerLog.record() names the client a trusted proxy reported, on the direct way to the output", () => {
  const out = output();
  const log = new AnswerLog(new Stats(), out);
  log.record({ ...ANSWER, forwardedFor: "192.0.2.8" });
  log.record(ANSWER);
  assertEquals(out.lines, [
    "[INF] flexo.request: GET /core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst (for 192.0.2.8) CACHE HIT 200 1234 bytes 3 ms\n",
    "[INF] flexo.request: GET /core/os/x86_64/zz-1.0-1-x86_64.pkg.tar.zst CACHE HIT 200 1234 bytes 3 ms\n",
  ]);
});
