/**
 * flexo's log, caught as text for a test: lines in the journal's form (no timestamps, each with its syslog
 * priority, see src/logging.ts).
 *
 * @module
 */

import type { LogLevel } from "@logtape/logtape";
import { closeLogging, setupLogging } from "../../src/logging.ts";

/** A log being caught: its text so far, and how to stop catching it (which flushes the lines before). */
export interface CapturedLog {
  text(): string;
  close(): Promise<void>;
}

/**
 * Sets up flexo's logging at `level` into a string until `close()`.
 *
 * @example
 * ```ts
 * const captured = await captureLog();
 * try {
 *   // ... what logs
 * } finally {
 *   await captured.close();
 * }
 * const log = captured.text();
 * ```
 */
export async function captureLog(level: LogLevel = "info"): Promise<CapturedLog> {
  const decoder = new TextDecoder();
  let log = "";
  await setupLogging({
    level,
    journal: true,
    stream: new WritableStream({ write: (chunk) => void (log += decoder.decode(chunk, { stream: true })) }),
  });
  return { text: () => log, close: () => closeLogging() };
}
