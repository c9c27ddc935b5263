/**
 * The answers the server gives without asking the app's request handler: a quick answer (a cache hit the app
 * prepared from the parsed head alone) and a refusal of a whole connection (a client not allowed in).
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
 * An answer made without a `Request`: the complete response as bytes, or a file to send with sendfile (only
 * offered when the connection can; one that could not be sent after all gets the full path).
 */
export type QuickAnswer = Uint8Array | QuickFile;

/** An answer given to every request of a connection that is refused as a whole. */
export interface Refusal {
  status: 403;
  message: string;
}
