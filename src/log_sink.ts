/**
 * The log's output: a logtape sink that never holds more than a fixed number of bytes. Lines are formatted at
 * once into one of two buffers; while one buffer is being written, the other fills, and each write takes a whole
 * buffer (many lines in one call). When the output cannot keep up and the filling buffer is full, lines are
 * dropped and counted, and once the output takes bytes again a line says how many were lost (as journald does:
 * "N log lines dropped"). A flood of requests thus costs a bounded amount of memory and one write per batch.
 * The buffers start small and grow as lines need room, up to their size: a quiet proxy holds a few KiB, not
 * the 512 KiB of two full buffers (V8 fills a new buffer with zeros, so all of it would be resident).
 *
 * @module
 */

import type { LogRecord, Sink } from "@logtape/logtape";
import type { LineFormatter } from "./log_format.ts";
import { writeAll } from "./write_all.ts";

/** Bytes of pending lines per buffer by default (two buffers: one filling, one being written). */
export const DEFAULT_LOG_BUFFER_BYTES = 256 * 1024;

/** A buffer's size when the first line comes; it doubles as lines need room, up to its full size. */
export const FIRST_LOG_BUFFER_BYTES = 4096;

/** Writes some of `bytes` to the output and says how many (like `Deno.stderr.write`). */
export type LogWriter = (bytes: Uint8Array) => Promise<number>;

/** Options for {@linkcode BoundedLogSink}. */
export interface BoundedLogSinkOptions {
  /** Where the bytes go. */
  write: LogWriter;
  /** Turns a record into a line. */
  format: LineFormatter;
  /** Bytes per buffer (default {@linkcode DEFAULT_LOG_BUFFER_BYTES}). */
  bufferBytes?: number;
  /** Called once everything is written, when the sink is disposed (closes the output). */
  close?: () => Promise<void>;
  /** The clock for the line that reports drops (default `Date.now`). */
  now?: () => number;
  /**
   * Milliseconds lines wait for more to join them in one write (default {@linkcode DEFAULT_LOG_FLUSH_MS}); a
   * half-full buffer is written at once. 0: at the end of the current task (tests).
   */
  flushMs?: number;
}

/** How long lines wait for more by default: one write carries a flood's lines of this many milliseconds. */
export const DEFAULT_LOG_FLUSH_MS = 20;

/** A sink with bounded memory that drops lines when its output cannot keep up; see the module's text. */
export class BoundedLogSink {
  #write: LogWriter;
  #format: LineFormatter;
  #close: (() => Promise<void>) | undefined;
  #now: () => number;
  #filling = new Uint8Array(0);
  #spare = new Uint8Array(0);
  #max: number;
  #used = 0;
  #writing: Promise<void> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #flushMs: number;
  #dropped = 0;
  #unreported = 0;
  #broken = false;
  #encoder = new TextEncoder();

  /** A sink writing through `options.write`. */
  constructor(options: BoundedLogSinkOptions) {
    this.#write = options.write;
    this.#format = options.format;
    this.#close = options.close;
    this.#now = options.now ?? Date.now;
    this.#flushMs = options.flushMs ?? DEFAULT_LOG_FLUSH_MS;
    this.#max = options.bufferBytes ?? DEFAULT_LOG_BUFFER_BYTES;
  }

  /** Bytes of the buffers now held (at most two buffers of `bufferBytes`). */
  get heldBytes(): number {
    return this.#filling.length + this.#spare.length;
  }

  /** Lines dropped since the start because the output could not keep up (or failed). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Bytes waiting to be written (never more than two buffers). */
  get pendingBytes(): number {
    return this.#used + (this.#writing === undefined ? 0 : this.#spare.length);
  }

  /** The logtape sink: formats `record` into the filling buffer, or drops it when that is full. */
  readonly sink: Sink = (record: LogRecord) => {
    if (this.#broken) {
      this.#drop();
      return;
    }
    this.#append(this.#format(record));
    this.#schedule();
  };

  /** Writes what is pending (and the count of dropped lines), then closes the output. */
  async [Symbol.asyncDispose](): Promise<void> {
    for (;;) {
      if (this.#writing !== undefined) await this.#writing;
      else if (this.#used > 0 && !this.#broken) this.#startWrite();
      else break;
    }
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#close?.();
  }

  #append(line: string): boolean {
    if (!this.#add(line)) {
      this.#drop();
      return false;
    }
    return true;
  }

  /** Puts `line` after the pending bytes, growing the filling buffer up to its full size; false if it does not fit. */
  #add(line: string): boolean {
    for (;;) {
      const { read, written } = this.#encoder.encodeInto(line, this.#filling.subarray(this.#used));
      if (read === line.length) {
        this.#used += written;
        return true;
      }
      if (this.#filling.length >= this.#max) return false;
      const grown = new Uint8Array(
        Math.min(this.#max, Math.max(FIRST_LOG_BUFFER_BYTES, this.#filling.length * 2)),
      );
      grown.set(this.#filling.subarray(0, this.#used));
      this.#filling = grown;
    }
  }

  #drop(): void {
    this.#dropped++;
    this.#unreported++;
  }

  /**
   * Has the filling buffer written: at once when it is half full, otherwise after {@linkcode DEFAULT_LOG_FLUSH_MS}
   * (so that a flood's lines go out in few large writes); while a write is under way, its end does this.
   */
  #schedule(): void {
    if (this.#writing !== undefined || this.#used === 0) return;
    if (this.#used * 2 >= this.#max) {
      this.#startWrite();
    } else if (this.#timer === undefined) {
      const later = () => this.#startWrite();
      this.#timer = setTimeout(later, this.#flushMs);
    }
  }

  #startWrite(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#writing !== undefined || this.#used === 0 || this.#broken) return;
    this.#writing = this.#writeBatch().finally(() => {
      this.#writing = undefined;
      this.#schedule();
    });
  }

  async #writeBatch(): Promise<void> {
    const batch = this.#filling.subarray(0, this.#used);
    [this.#filling, this.#spare] = [this.#spare, this.#filling];
    const lines = countLines(batch);
    this.#used = 0;
    try {
      await writeAll({ write: this.#write }, batch);
    } catch {
      // The output is gone (stderr closed): nothing more can be said, so lines are only counted from now on.
      // The lines logged while this write was under way wait in the other buffer: lost too.
      this.#broken = true;
      this.#dropped += lines + countLines(this.#filling.subarray(0, this.#used));
      this.#used = 0;
      return;
    }
    if (this.#unreported > 0) this.#reportDrops();
  }

  /**
   * Adds the line about dropped lines after the lines that were logged before them, when it fits; otherwise it
   * waits for the next batch's end (and counts the lines dropped until then too).
   */
  #reportDrops(): void {
    const count = this.#unreported;
    const line = this.#format({
      category: ["flexo", "logging"],
      level: "warning",
      message: [`${count} log lines dropped: the log output could not keep up`],
      rawMessage: "{count} log lines dropped: the log output could not keep up",
      timestamp: this.#now(),
      properties: { count },
    });
    if (!this.#add(line)) return;
    this.#unreported -= count;
  }
}

function countLines(bytes: Uint8Array): number {
  let lines = 0;
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === 10) lines++;
  return lines;
}
