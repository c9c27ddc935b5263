import { getLogger } from "@logtape/logtape";
import { assert, assertEquals } from "./helpers/assert.ts";
import { closeLogging, describeError, setupLogging } from "../src/logging.ts";

// logtape's configuration is global to the process: every test here ends with closeLogging() in a `finally`,
// so that no sink or stream outlives it and other tests in this process see logging unconfigured.

/** A stream that keeps what is written to it, and whether it was closed. */
function collector(): { stream: WritableStream<Uint8Array>; text: () => string; closed: () => boolean } {
  const decoder = new TextDecoder();
  let text = "";
  let closed = false;
  const stream = new WritableStream<Uint8Array>({
    write(chunk) {
      text += decoder.decode(chunk, { stream: true });
    },
    close() {
      closed = true;
    },
  });
  return { stream, text: () => text, closed: () => closed };
}

function linesOf(text: string): string[] {
  return text.split("\n").filter((line) => line !== "");
}

/** `YYYY-MM-DD HH:MM:SS.mmm +HH ` (or `+HH:MM` in a zone with minutes) at the start of a line. */
const TIMESTAMP = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} [+-]\d{2}(?::\d{2})? /;

Deno.test("setupLogging() writes lines at and above the level only", async () => {
  const out = collector();
  try {
    await setupLogging({ level: "info", stream: out.stream, journal: true });
    const log = getLogger(["flexo", "test"]);
    log.trace("trace line");
    log.debug("debug line");
    log.info("info line");
    log.warn("warning line");
    log.error("error line");
    log.fatal("fatal line");
  } finally {
    await closeLogging();
  }
  const lines = linesOf(out.text());
  assertEquals(lines, [
    "<6>[INF] flexo.test: info line",
    "<4>[WRN] flexo.test: warning line",
    "<3>[ERR] flexo.test: error line",
    "<2>[FTL] flexo.test: fatal line",
  ]);
});

Deno.test("setupLogging() at level warning leaves out info lines", async () => {
  const out = collector();
  try {
    await setupLogging({ level: "warning", stream: out.stream, journal: true });
    const log = getLogger(["flexo", "download"]);
    log.info("not shown");
    log.warn("shown");
  } finally {
    await closeLogging();
  }
  assertEquals(linesOf(out.text()), ["<4>[WRN] flexo.download: shown"]);
});

Deno.test("setupLogging() writes only flexo's own categories", async () => {
  const out = collector();
  try {
    await setupLogging({ level: "debug", stream: out.stream, journal: true });
    getLogger(["somelibrary"]).error("not ours");
    getLogger(["flexo"]).debug("ours");
  } finally {
    await closeLogging();
  }
  assertEquals(linesOf(out.text()), ["<7>[DBG] flexo: ours"]);
});

Deno.test("setupLogging() starts lines with a timestamp unless writing to the journal", async () => {
  const plain = collector();
  const journal = collector();
  try {
    await setupLogging({ level: "info", stream: plain.stream });
    getLogger(["flexo", "server"]).info("listening");
    await setupLogging({ level: "info", stream: journal.stream, journal: true });
    getLogger(["flexo", "server"]).info("listening");
  } finally {
    await closeLogging();
  }
  const [line] = linesOf(plain.text());
  assert(TIMESTAMP.test(line), `a timestamp starts the line: ${line}`);
  assertEquals(line.replace(TIMESTAMP, ""), "[INF] flexo.server: listening");
  assertEquals(linesOf(journal.text()), ["<6>[INF] flexo.server: listening"]);
});

Deno.test("setupLogging() renders string and number values bare", async () => {
  const out = collector();
  try {
    await setupLogging({ level: "info", stream: out.stream, journal: true });
    getLogger(["flexo", "download"]).warn("{mirror} failed for {path} at byte {written}", {
      mirror: "http://mirror-a.test/",
      path: "core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst",
      written: 300000,
    });
  } finally {
    await closeLogging();
  }
  assertEquals(linesOf(out.text()), [
    "<4>[WRN] flexo.download: http://mirror-a.test/ failed for core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst " +
    "at byte 300000",
  ]);
});

Deno.test("setupLogging() called again replaces the earlier output", async () => {
  const first = collector();
  const second = collector();
  try {
    await setupLogging({ level: "info", stream: first.stream, journal: true });
    getLogger(["flexo"]).info("one");
    await setupLogging({ level: "info", stream: second.stream, journal: true });
    getLogger(["flexo"]).info("two");
  } finally {
    await closeLogging();
  }
  assertEquals(linesOf(first.text()), ["<6>[INF] flexo: one"]);
  assertEquals(linesOf(second.text()), ["<6>[INF] flexo: two"]);
});

Deno.test("closeLogging() flushes and closes the stream, and later lines go nowhere", async () => {
  const out = collector();
  try {
    await setupLogging({ level: "info", stream: out.stream, journal: true });
    getLogger(["flexo"]).info("before");
  } finally {
    await closeLogging();
  }
  assertEquals(
    linesOf(out.text()),
    ["<6>[INF] flexo: before"],
    "everything logged is written before it returns",
  );
  assert(out.closed(), "the stream is closed");
  getLogger(["flexo"]).error("after");
  assertEquals(linesOf(out.text()), ["<6>[INF] flexo: before"]);
  await closeLogging();
});

Deno.test("describeError() gives an error's message or stack, and any thrown value as text", () => {
  const error = new Error("disk gone");
  assertEquals(describeError(error), "disk gone");
  assert(describeError(error, { stack: true }).startsWith("Error: disk gone\n"));
  assertEquals(describeError("plain"), "plain");
  assertEquals(describeError(Object.create(null)), "[object Object]", "a value String() cannot convert");
});

Deno.test("setupLogging() starts each line for the journal with its syslog priority, so journalctl -p sees the levels", async () => {
  const out = collector();
  try {
    await setupLogging({ level: "debug", stream: out.stream, journal: true });
    const log = getLogger(["flexo", "server"]);
    log.debug("debug line");
    log.info("info line");
    log.warn("warning line");
    log.error("error line");
    log.fatal("fatal line");
  } finally {
    await closeLogging();
  }
  // sd-daemon(3): journald reads "<N>" at the start of a line on a service's stderr as its priority.
  assertEquals(linesOf(out.text()), [
    "<7>[DBG] flexo.server: debug line",
    "<6>[INF] flexo.server: info line",
    "<4>[WRN] flexo.server: warning line",
    "<3>[ERR] flexo.server: error line",
    "<2>[FTL] flexo.server: fatal line",
  ]);
});
