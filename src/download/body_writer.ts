/**
 * Writing a download's body to its partial file in fewer, larger writes. A fast mirror's body arrives in reads
 * of about 73 KiB (some 14,000 per GiB); writing each on its own cost a hand-off to a thread and back, a wake of
 * every waiting client and a hash update per read. Here a chunk is copied into a buffer and the call returns at
 * once; a write starts as soon as none is running, with every byte that arrived meanwhile: a slow mirror's
 * chunks are still written one by one as they come (clients see them at once), while a fast mirror's are
 * gathered while the previous write is on its thread.
 *
 * Memory is bounded: two buffers of at most {@linkcode COALESCE_BYTES} per download (the one being written and
 * the one filling), allocated no larger than the rest of the file; when both are full, the next chunk waits
 * for the write to end, and so does the reading of the body.
 *
 * Every write still goes through a thread (`FsFile.write`), so that a slow disk never stalls the event loop.
 *
 * @module
 */

/** The most bytes one buffer gathers, and so the largest single write: two such buffers per download. */
export const COALESCE_BYTES = 512 * 1024;

/** Where a {@linkcode BodyWriter}'s bytes go. */
export interface BodyWriterIo {
  /**
   * Starts writing all of `bytes` to the file, after every earlier write; resolves once they are written.
   * `bytes` stays untouched until then, so the caller may also read (hash) it meanwhile.
   */
  write(bytes: Uint8Array): Promise<void>;
  /** `bytes`, given to {@linkcode BodyWriterIo.write} before, are written: called in the order of the writes. */
  written(bytes: Uint8Array): void;
}

/**
 * Gathers chunks of a body into at most two buffers and writes them in order, one write at a time. Call
 * {@linkcode BodyWriter.drain} after the last chunk: bytes are on disk only once it resolves.
 */
export class BodyWriter {
  readonly #io: BodyWriterIo;
  readonly #capacity: number;
  /** The buffer chunks are copied into, and how much of it is used. */
  #filling?: Uint8Array;
  #filled = 0;
  /**
   * Buffers whose writes ended, kept for reuse: a writer never makes more than two (a new 512 KiB buffer is a
   * fresh zeroed mapping for the kernel, and garbage once dropped).
   */
  readonly #idle: Uint8Array[] = [];
  /** The write running, if any; it never rejects (its error is kept in {@linkcode BodyWriter.#error}). */
  #running?: Promise<void>;
  #error?: { cause: unknown };
  #writes = 0;
  #buffersMade = 0;

  /**
   * @param io The file and what follows each write.
   * @param capacity The size of each of the two buffers: at most {@linkcode COALESCE_BYTES}; a file with fewer
   *   bytes left than that needs no more (at least 1).
   */
  constructor(io: BodyWriterIo, capacity: number = COALESCE_BYTES) {
    this.#io = io;
    this.#capacity = Math.max(1, Math.min(COALESCE_BYTES, Math.floor(capacity)));
  }

  /** Writes started, for tests and measurements. */
  get writes(): number {
    return this.#writes;
  }

  /** Buffers made, for tests: at most two. */
  get buffersMade(): number {
    return this.#buffersMade;
  }

  /** The bytes held in memory now (both buffers), for tests: never more than twice the capacity. */
  get bufferedBytes(): number {
    let bytes = (this.#filling?.byteLength ?? 0) + (this.#running === undefined ? 0 : this.#capacity);
    for (const buffer of this.#idle) bytes += buffer.byteLength;
    return bytes;
  }

  /**
   * Takes a copy of `chunk` (the caller may reuse its memory once this returns or resolves) and starts a write
   * if none is running. Returns nothing when the chunk fitted, or a promise when it had to wait for a write to
   * end first.
   *
   * @throws {unknown} what a previous write failed with (also as the promise's rejection).
   */
  push(chunk: Uint8Array): Promise<void> | undefined {
    if (this.#error !== undefined) throw this.#error.cause;
    const taken = this.#take(chunk, 0);
    return taken === chunk.byteLength ? undefined : this.#pushRest(chunk, taken);
  }

  /** Resolves once every byte pushed is written; rejects with the first write's error, if one failed. */
  async drain(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
    if (this.#error !== undefined) throw this.#error.cause;
  }

  /** Waits for the running write to end, then copies the rest of `chunk` from `offset` on. */
  async #pushRest(chunk: Uint8Array, offset: number): Promise<void> {
    while (offset < chunk.byteLength) {
      await this.#running;
      if (this.#error !== undefined) throw this.#error.cause;
      offset = this.#take(chunk, offset);
    }
  }

  /** Copies what fits of `chunk` from `offset` on, starts a write if none runs; returns the new offset. */
  #take(chunk: Uint8Array, offset: number): number {
    while (offset < chunk.byteLength) {
      const room = this.#capacity - this.#filled;
      if (room === 0) {
        if (this.#running !== undefined) return offset;
        this.#start();
        continue;
      }
      const buffer = this.#filling ??= this.#fresh();
      const count = Math.min(room, chunk.byteLength - offset);
      buffer.set(
        offset === 0 && count === chunk.byteLength ? chunk : chunk.subarray(offset, offset + count),
        this.#filled,
      );
      this.#filled += count;
      offset += count;
    }
    if (this.#running === undefined) this.#start();
    return offset;
  }

  #fresh(): Uint8Array {
    const idle = this.#idle.pop();
    if (idle !== undefined) return idle;
    this.#buffersMade++;
    return new Uint8Array(this.#capacity);
  }

  /** Writes what the filling buffer holds; when that ends, starts the next write of what arrived meanwhile. */
  #start(): void {
    const buffer = this.#filling;
    if (buffer === undefined || this.#filled === 0) return;
    const bytes = buffer.subarray(0, this.#filled);
    this.#filling = undefined;
    this.#filled = 0;
    this.#writes++;
    let writing: Promise<void>;
    try {
      writing = this.#io.write(bytes);
    } catch (error) {
      writing = Promise.reject(error);
    }
    this.#running = writing.then(
      () => {
        this.#running = undefined;
        this.#idle.push(buffer);
        try {
          this.#io.written(bytes);
        } catch (error) {
          this.#error ??= { cause: error };
          return;
        }
        if (this.#error === undefined) this.#start();
      },
      (error) => {
        this.#running = undefined;
        this.#error ??= { cause: error };
      },
    );
  }
}
