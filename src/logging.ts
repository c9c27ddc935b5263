/**
 * Log output: plain text lines on stderr at the configured level. Under systemd (`JOURNAL_STREAM` set) the
 * journal adds its own timestamps, so lines carry none.
 *
 * @module
 */

export { describeError } from "./describe_error.ts";
import { configure, getStreamSink, getTextFormatter, type LogLevel, reset } from "@logtape/logtape";

/** Options for {@linkcode setupLogging}. */
export interface LoggingOptions {
  /** The lowest level that is written. */
  level: LogLevel;
  /** Leave out timestamps (set when running under systemd's journal). */
  journal?: boolean;
  /** Where lines go. Default: stderr. */
  stream?: WritableStream<Uint8Array>;
}

/** Configures logging for the whole process; call once from the command line entry. */
export async function setupLogging(options: LoggingOptions): Promise<void> {
  await configure({
    reset: true,
    sinks: {
      stderr: getStreamSink(options.stream ?? Deno.stderr.writable, {
        formatter: getTextFormatter({
          timestamp: options.journal ? "none" : "date-time-tz",
          category: ".",
          value: "bare",
        }),
      }),
    },
    loggers: [
      { category: ["flexo"], lowestLevel: options.level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Flushes and closes log output (before the process exits). */
export async function closeLogging(): Promise<void> {
  await reset();
}
