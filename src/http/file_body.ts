/**
 * The contract between the app and the server for responses whose body is a file: the app says which bytes of
 * which file (a cached file, or one a download is still writing), the server alone decides how they go out --
 * with sendfile(2), copied in large pieces, or through the response's own stream.
 *
 * A {@linkcode FileResponse} is an ordinary `Response` (its body streams the same bytes, so tests and any other
 * server read it as usual) that also carries its {@linkcode FileBody}. Making a new `Response` from it drops the
 * file body on purpose: the body of the new response may be other bytes.
 *
 * @example
 * ```ts
 * import { FileResponse, fileBodyOf } from "./file_body.ts";
 * const response = new FileResponse(null, { status: 200 }, { path: "/cache/x", start: 0, length: 3, size: 3 });
 * fileBodyOf(response)?.path; // "/cache/x"
 * ```
 *
 * @module
 */

/** The byte range of a file that a response body streams: a cached file, or one a download is writing. */
export interface FileBody {
  /** The file to open. */
  path: string;
  /** Offset of the first byte sent. */
  start: number;
  /** Bytes sent. */
  length: number;
  /** Size of the whole file (when complete); a cached file of another size is not sent. */
  size: number;
  /** For a file that a download is still writing: how far it is, and how to wait for more. */
  growing?: GrowingFile;
}

/** A file that a download is writing, as the server follows it. */
export interface GrowingFile {
  /** Where the file may be instead of `path` when opened (a download renames its file when it is complete). */
  alternatives: readonly string[];
  /**
   * How many bytes of the file (from offset 0) may be sent now. The download decides: it holds back the last byte
   * of the response (of the file, or of a range) until it has verified the file, so a client whose bytes turn out
   * wrong gets a short response.
   */
  releasable(): number;
  /** Resolves at the next change: more bytes, or the end. */
  changed(): Promise<void>;
  /** Whether the download still runs, completed, or failed (and why). */
  outcome(): "running" | "complete" | { failed: string };
  /** Told how many body bytes went out after each write. */
  onBytes?(bytes: number): void;
}

/** A response whose body is (a range of) a file; see the module documentation. */
export class FileResponse extends Response {
  /** The bytes of the file that the body streams. */
  readonly file: FileBody;

  /** A response with `body` (the file's bytes as a stream, for readers other than the server) and `file`. */
  constructor(body: BodyInit | null, init: ResponseInit, file: FileBody) {
    super(body, init);
    this.file = file;
  }
}

/** The file body of `response`, if it is a {@linkcode FileResponse}. */
export function fileBodyOf(response: Response): FileBody | undefined {
  return response instanceof FileResponse ? response.file : undefined;
}
