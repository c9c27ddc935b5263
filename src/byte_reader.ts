/**
 * Exact-size reads from a byte stream: the tar and zstd parsers of `repo_db.ts` ask for "the next 512 bytes"
 * or "the next 3 bytes" whatever the chunking of the stream underneath.
 *
 * @module
 */

/** Reads exact byte counts from a stream, holding only what has been read ahead of the caller. */
export class ByteReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #wrapError: (error: unknown) => Error;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #done = false;

  /**
   * Wraps `stream` for exact-size reads.
   *
   * @param stream The bytes to read; the reader locks it.
   * @param wrapError Turns an error of the stream into the error the caller reports.
   */
  constructor(stream: ReadableStream<Uint8Array>, wrapError: (error: unknown) => Error) {
    this.#reader = stream.getReader();
    this.#wrapError = wrapError;
  }

  /** Up to `count` bytes without consuming them (fewer only at the end of the stream). */
  async peek(count: number): Promise<Uint8Array> {
    await this.#fill(count);
    return this.#take(Math.min(count, this.#buffered), false);
  }

  /** Exactly `count` bytes, or fewer only at the end of the stream. */
  async read(count: number): Promise<Uint8Array> {
    await this.#fill(count);
    return this.#take(Math.min(count, this.#buffered), true);
  }

  /** Discard up to `count` bytes; returns how many there were. */
  async skip(count: number): Promise<number> {
    let skipped = 0;
    while (skipped < count) {
      if (this.#buffered === 0 && !(await this.#pullChunk())) break;
      const first = this.#chunks[0];
      const step = Math.min(first.length, count - skipped);
      this.#chunks[0] = first.subarray(step);
      if (this.#chunks[0].length === 0) this.#chunks.shift();
      this.#buffered -= step;
      skipped += step;
    }
    return skipped;
  }

  /** The unread rest as a stream (buffered bytes first); the reader must not be used after this. */
  remaining(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (this.#buffered === 0 && !(await this.#pullChunk())) {
          controller.close();
          return;
        }
        const chunk = this.#chunks.shift()!;
        this.#buffered -= chunk.length;
        controller.enqueue(chunk);
      },
      cancel: (reason) => this.cancel(reason),
    });
  }

  /** Stop reading and release the source. */
  async cancel(reason?: unknown): Promise<void> {
    this.#done = true;
    this.#chunks = [];
    this.#buffered = 0;
    await this.#reader.cancel(reason).catch(() => {});
  }

  async #fill(count: number): Promise<void> {
    while (this.#buffered < count && await this.#pullChunk());
  }

  /** Read the next non-empty chunk into the buffer; false at the end of the stream. */
  async #pullChunk(): Promise<boolean> {
    while (!this.#done) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await this.#reader.read();
      } catch (error) {
        this.#done = true;
        throw this.#wrapError(error);
      }
      if (result.done) {
        this.#done = true;
      } else if (result.value.length > 0) {
        this.#chunks.push(result.value);
        this.#buffered += result.value.length;
        return true;
      }
    }
    return false;
  }

  #take(count: number, consume: boolean): Uint8Array {
    if (count === 0) return new Uint8Array(0);
    const first = this.#chunks[0];
    const bytes = first.length >= count ? first.subarray(0, count) : concat(this.#chunks, count);
    if (!consume) return bytes;
    let left = count;
    while (left > 0) {
      const chunk = this.#chunks[0];
      if (chunk.length > left) {
        this.#chunks[0] = chunk.subarray(left);
        left = 0;
      } else {
        this.#chunks.shift();
        left -= chunk.length;
      }
    }
    this.#buffered -= count;
    return bytes;
  }
}

/** The first `length` bytes (all by default) of the chunks, joined. */
export function concat(
  chunks: Uint8Array[],
  length: number = chunks.reduce((sum, chunk) => sum + chunk.length, 0),
): Uint8Array {
  const result = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    if (offset >= length) break;
    const part = chunk.subarray(0, length - offset);
    result.set(part, offset);
    offset += part.length;
  }
  return result;
}

/** True when `bytes` begins with `prefix`. */
export function startsWith(bytes: Uint8Array, prefix: number[] | Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}
