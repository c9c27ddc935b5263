/**
 * Which responses the connection layer sends with sendfile (see {@linkcode ./sendfile.ts}), and their head.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { type ClientSocket, fileRangeOf, type FileSender, SENDFILE_MIN_BYTES } from "./sendfile.ts";

const log = getLogger(["flexo", "server"]);
const ENCODER = new TextEncoder();

/** Headers that describe the connection or the framing, which the head written here sets itself. */
const FRAMING_HEADERS = new Set(["connection", "keep-alive", "transfer-encoding", "content-length"]);

const REASONS: Record<number, string> = { 200: "OK", 206: "Partial Content" };

/**
 * The HTTP/1.1 head of `response` with a body of `length` bytes, for a connection that closes after it: the
 * response's own headers (Headers has already refused line breaks in names and values), then `content-length`,
 * `connection: close` and, unless present, `date`.
 */
export function responseHead(response: Response, options: { length: number; now?: Date }): Uint8Array {
  const lines = [`HTTP/1.1 ${response.status} ${REASONS[response.status] ?? response.statusText}`];
  let hasDate = false;
  for (const [name, value] of response.headers) {
    if (FRAMING_HEADERS.has(name)) continue;
    if (name === "date") hasDate = true;
    lines.push(`${name}: ${value}`);
  }
  lines.push(`content-length: ${options.length}`, "connection: close");
  if (!hasDate) lines.push(`date: ${(options.now ?? new Date()).toUTCString()}`);
  return ENCODER.encode(lines.join("\r\n") + "\r\n\r\n");
}

/**
 * Whether `response` to `req` should go out with sendfile: a GET answered 200 or 206 with a marked file body of
 * at least {@linkcode SENDFILE_MIN_BYTES}, over HTTP/1.x (which sends a `Host` header; Deno's HTTP/2 requests
 * have none), while the sender has room.
 */
export function shouldSendfile(req: Request, response: Response, sender: FileSender): boolean {
  // The mark first: one lookup, which rules out every small hit without touching its headers.
  const range = fileRangeOf(response);
  if (range === undefined || range.length < SENDFILE_MIN_BYTES) return false;
  if (req.method !== "GET" || (response.status !== 200 && response.status !== 206)) return false;
  return sender.hasRoom && req.headers.has("host");
}

/**
 * Sends `response` (which {@linkcode shouldSendfile} accepted) below Deno's HTTP server when the connection's
 * socket is known; otherwise, or when nothing could be written, returns it unchanged. Once the first byte is out
 * the app's body is cancelled (closing its file or its follower); after the send an empty response is returned,
 * which Deno then fails to write on the socket's closed side.
 */
export async function sendBelowServer(
  response: Response,
  options: { sender: FileSender; socket: () => ClientSocket | undefined; stallMs: number },
): Promise<Response> {
  const range = fileRangeOf(response);
  const socket = options.socket();
  if (range === undefined || socket === undefined) return response;
  // Once the first byte is out, the app's body (its open file, or its follower of a download) is not needed.
  const release = () => void response.body?.cancel().catch(() => {});
  const result = await options.sender.send(socket, responseHead(response, { length: range.length }), {
    range,
    stallMs: options.stallMs,
    onCommitted: release,
  });
  if (result.outcome === "not_started") {
    log.debug("Streaming {path} through Deno: {reason}", { path: range.path, reason: result.reason });
    return response;
  }
  if (result.outcome === "failed") {
    log.info("Sending {path} to a client stopped: {reason}", { path: range.path, reason: result.reason });
  }
  return new Response(null, { status: response.status });
}
