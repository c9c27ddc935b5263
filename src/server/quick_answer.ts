/**
 * The answers the server gives without asking the app's request handler: a quick answer (a cache hit the app
 * prepared from the parsed head alone, or a miss it answers from it) and a refusal of a whole connection (a
 * client not allowed in).
 *
 * @module
 */

import type { FileBody } from "../http/file_body.ts";
import type { ResponseSent } from "../http/client_request.ts";

/** A cached file to send with sendfile after `head`; `done` is told how the send went. */
export interface QuickFile {
  head: Uint8Array;
  file: FileBody;
  done: (sent: ResponseSent | undefined) => void;
}

/**
 * An answer the app gives from the parsed head after a wait (a cache miss waits for a mirror): a head and a file
 * to send with sendfile, or a response to write as the full path's are. Only offered when the connection can
 * send files.
 */
export interface QuickLater {
  later: Promise<LaterAnswer>;
}

/**
 * The answer of a {@linkcode QuickLater}: `head` and `file` to send with sendfile when both are given and the
 * connection still keeps alive, else (or when sendfile declines) `response()`, written as the full path writes its
 * responses. `done` is told once how it went.
 */
export interface LaterAnswer {
  head?: Uint8Array;
  file?: FileBody;
  response: () => Response;
  done: (sent: ResponseSent) => void;
}

/**
 * What a quick answer may use: `files`, whether the connection can send a file with sendfile; `remote`, the
 * connection's address (the request log names the client a trusted proxy reports for it).
 */
export interface QuickOptions {
  readonly files: boolean;
  readonly remote?: string;
}

/**
 * An answer made without a `Request`: the complete response as bytes, or a file to send with sendfile (only
 * offered when the connection can; one that could not be sent after all gets the full path), or one to wait for.
 */
export type QuickAnswer = Uint8Array | QuickFile | QuickLater;

/** An answer given to every request of a connection that is refused as a whole. */
export interface Refusal {
  status: 403;
  message: string;
}

/**
 * What is decided about a connection when it is accepted, by its client's address: refused as a whole (a
 * {@linkcode Refusal}, the answer to each of its requests), served with every request judged by the handler on
 * its own (`"each_request"`: no quick answers, which are made from the head alone; for a trusted proxy, whose
 * clients are named in each request's headers), or served as usual (undefined).
 */
export type Admission = Refusal | "each_request" | undefined;
