/**
 * A response body that can be read without its stream: flexo's upstream client (`src/upstream/`) gives each
 * body it makes a {@linkcode DirectBody} that reads the connection into the caller's buffer, and a download's
 * transfer (`src/download/transfer.ts`) reads through it when there is one. The `ReadableStream` stays the
 * body for everyone else (tests, the runtime's `fetch`, any other reader); its reads go through the streams
 * machinery, whose promises and byte-stream requests cost a cold miss about 0.1 ms per chunk on the way from
 * the mirror's bytes to the client's (BENCHMARKS.md, session nine).
 *
 * Taking the direct body is once and for all: whoever takes it reads the body, and leaves the stream alone.
 *
 * @example
 * ```ts
 * import { takeDirectBody, withDirectBody } from "./direct_body.ts";
 * const stream = new ReadableStream<Uint8Array>();
 * withDirectBody(stream, { readInto: () => Promise.resolve(null), cancel: () => {} });
 * takeDirectBody(stream) !== undefined; // true, and undefined from then on
 * ```
 *
 * @module
 */

/** Reads a body straight into the caller's memory. */
export interface DirectBody {
  /** Reads at most `view.length` bytes of the body into `view`: how many, or null at the body's end. */
  readInto(view: Uint8Array): Promise<number | null>;
  /** The reader is done with the body (read whole, or abandoned): what is left of it is dropped. */
  cancel(): void;
}

/** The property a stream's direct reader is kept under: on the stream itself, so the module holds no state. */
const DIRECT = Symbol("flexo.directBody");

/** A stream that may carry a direct reader. */
type WithDirect = ReadableStream<Uint8Array> & { [DIRECT]?: DirectBody };

/** Gives `stream` a direct reader; returns `stream`. */
export function withDirectBody(
  stream: ReadableStream<Uint8Array>,
  direct: DirectBody,
): ReadableStream<Uint8Array> {
  (stream as WithDirect)[DIRECT] = direct;
  return stream;
}

/**
 * The direct reader of `stream`, if it has one and nobody has taken it or read the stream: the caller reads
 * the body through it from now on, and must not read the stream.
 */
export function takeDirectBody(stream: ReadableStream<Uint8Array>): DirectBody | undefined {
  const carrier = stream as WithDirect;
  const direct = carrier[DIRECT];
  if (direct === undefined) return undefined;
  carrier[DIRECT] = undefined;
  return stream.locked ? undefined : direct;
}
