/**
 * Log output: plain text lines on stderr at the configured level. Under systemd (`JOURNAL_STREAM` set) the
 * journal adds its own timestamps, so lines carry none, and each starts with its syslog priority (`<4>` for a
 * warning), which the journal takes as the line's level. The output holds a bounded number of bytes and drops
 * (and counts) lines when stderr cannot keep up; see {@linkcode ./log_sink.ts}.
 *
 * @module
 */

export { describeError } from "./describe_error.ts";
import { configure, type LogLevel, reset } from "@logtape/logtape";
import { cheapTextFormatter } from "./log_format.ts";
import { BoundedLogSink } from "./log_sink.ts";

/** Options for {@linkcode setupLogging}. */
export interface LoggingOptions {
  /** The lowest level that is written. */
  level: LogLevel;
  /**
   * Writing to systemd's journal: lines carry no timestamps (the journal adds its own) and start with their
   * syslog priority (`<3>` for an error, ...), which the journal takes as the line's level.
   */
  journal?: boolean;
  /** Where lines go. Default: stderr. */
  stream?: WritableStream<Uint8Array>;
  /** Bytes of lines held while the output is busy, per buffer (two buffers); for tests. */
  bufferBytes?: number;
}

/** The log's output as the rest of the proxy sees it: the request log's fast way in, and the drops for `/metrics`. */
export interface LogOutput {
  /** Lines dropped since the start because the output could not keep up. */
  readonly dropped: number;
  /**
   * Writes one line of `category` at `level` straight to the output when that level is written, without
   * logtape's per-call work (which costs several microseconds a line: a fifth of a cached answer's time). The
   * message is logtape's: text parts at even positions, values at odd ones.
   */
  line(category: readonly string[], level: LogLevel, message: readonly unknown[]): void;
  /** Whether lines of `level` are written: a caller can skip building a line that would be dropped. */
  enabled(level: LogLevel): boolean;
}

const LEVEL_ORDER: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];

/** Configures logging for the whole process; call once from the command line entry. */
export async function setupLogging(options: LoggingOptions): Promise<LogOutput> {
  const sink = new BoundedLogSink({
    ...outputOf(options.stream),
    format: cheapTextFormatter({ timestamps: !options.journal, priorities: options.journal }),
    bufferBytes: options.bufferBytes,
  });
  const lowest = LEVEL_ORDER.indexOf(options.level);
  // logtape disposes of its sinks on reset (closeLogging): the sink's own disposal flushes and closes it.
  const stderr = Object.assign(sink.sink, { [Symbol.asyncDispose]: () => sink[Symbol.asyncDispose]() });
  await configure({
    reset: true,
    sinks: { stderr },
    loggers: [
      { category: ["flexo"], lowestLevel: options.level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
  return {
    get dropped() {
      return sink.dropped;
    },
    enabled(level) {
      return LEVEL_ORDER.indexOf(level) >= lowest;
    },
    line(category, level, message) {
      if (LEVEL_ORDER.indexOf(level) < lowest) return;
      sink.sink({ category, level, message, rawMessage: "", timestamp: Date.now(), properties: {} });
    },
  };
}

function outputOf(
  stream: WritableStream<Uint8Array> | undefined,
): { write: (bytes: Uint8Array) => Promise<number>; close?: () => Promise<void> } {
  if (stream === undefined) return { write: (bytes) => Deno.stderr.write(bytes) };
  const writer = stream.getWriter();
  return {
    // A copy: the stream may hold the chunk after the write, and the sink reuses its buffers.
    write: async (bytes) => {
      await writer.write(bytes.slice());
      return bytes.length;
    },
    close: () => writer.close(),
  };
}

/** Flushes and closes log output (before the process exits). */
export async function closeLogging(): Promise<void> {
  await reset();
}
