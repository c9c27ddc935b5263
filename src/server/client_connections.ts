/**
 * Accepting client connections and serving each with flexo's own HTTP/1.1 layer (see http1_connection.ts), with
 * one periodic sweep that closes connections which wait too long: no complete request head within the timeout
 * after connecting or after the previous response (a silent client, half a request head, an idle keep-alive
 * connection), or a response that the client has taken no bytes of for as long. `Deno.serve` has no such limit
 * for request heads; a response that is slow because upstream is slow is never cut.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  ClientConnection,
  type ConnectionHandler,
  type QuickAnswer,
  type Refusal,
} from "./http1_connection.ts";
import type { RequestHead } from "./http1_head.ts";
import { HttpDates } from "./http1_response.ts";
import { CopyBuffers } from "./file_copy.ts";
import { describeError } from "../logging.ts";
import type { FileSender } from "./sendfile.ts";

export type { ConnectionHandler } from "./http1_connection.ts";

const log = getLogger(["flexo", "server"]);

/** A listening socket whose connections are served with a client timeout. */
export interface ClientListener {
  /** The address actually listened on. */
  addr: Deno.NetAddr;
  /** How many client connections are open. */
  readonly connections: number;
  /** Stops accepting; open connections finish their running responses, idle ones are closed. */
  shutdown(): Promise<void>;
  /** Resolves when the listener and every connection have closed. */
  finished: Promise<void>;
}

/** Pause after a failed `accept` (such as "too many open files") before trying again. */
const ACCEPT_RETRY_MS = 100;

/**
 * Listens on `hostname:port` and serves every connection with `handler`, closing a connection that has no
 * request in progress and does not complete a request head within `timeoutMs`, or whose client takes no bytes
 * of a response for `timeoutMs`. `quickAnswer` may answer a request from memory before any `Request` is made;
 * with a `sender`, file bodies go out with sendfile (see sendfile.ts). Throws what `Deno.listen` throws
 * (`AddrInUse`, `PermissionDenied`, ...).
 */
export function listenForClients(
  handler: ConnectionHandler,
  options: {
    hostname: string;
    port: number;
    timeoutMs: number;
    onError: (error: unknown) => Response | Promise<Response>;
    quickAnswer?: (head: RequestHead, options: { files: boolean }) => QuickAnswer | undefined;
    sender?: FileSender;
    /**
     * Decides, as a connection is accepted, whether its client is served: a refusal is the answer to each of
     * its requests (so a refused client still learns why), and nothing else of the app runs for it.
     */
    admit?: (remote: Deno.NetAddr) => Refusal | undefined;
  },
): ClientListener {
  const listener = Deno.listen({ hostname: options.hostname, port: options.port, transport: "tcp" });
  let closing = false;
  // One set of connections and one sweep over them, instead of a timer per request: timers cost CPU and garbage
  // per request (see BENCHMARKS.md).
  const open = new Set<ClientConnection>();
  let allClosed: PromiseWithResolvers<void> | undefined;
  // A timeout of 0 (or less) means none: connections are never closed for waiting.
  const timed = options.timeoutMs > 0;
  const sweepMs = Math.max(10, Math.min(1_000, Math.floor(options.timeoutMs / 4)));
  let sweeper: ReturnType<typeof setInterval> | undefined;
  const sweep = () => {
    const now = performance.now();
    for (const connection of open) {
      const writing = connection.writingSince > 0 && now - connection.writingSince >= options.timeoutMs;
      const idle = !connection.busy && now - connection.idleSince >= options.timeoutMs;
      if (!writing && !idle) continue;
      log.debug("Closing a connection from {client}: {why} for {ms} ms", {
        client: connection.remoteAddr.hostname,
        why: writing ? "it took no bytes of its response" : "no complete request",
        ms: options.timeoutMs,
      });
      connection.close();
    }
    if (open.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };
  const connectionOptions = {
    dates: new HttpDates(),
    buffers: new CopyBuffers(),
    handler,
    onError: options.onError,
    quickAnswer: options.quickAnswer,
    sender: options.sender,
  };

  const serveOne = (conn: Deno.TcpConn) => {
    // Without TCP_NODELAY, a response's last small segment waits until the client acknowledges the one before,
    // and clients delay that acknowledgement by ~40 ms: a stall per file on a kept-alive connection.
    conn.setNoDelay(true);
    const refusal = options.admit?.(conn.remoteAddr as Deno.NetAddr);
    const connection = new ClientConnection(
      conn,
      refusal === undefined ? connectionOptions : { ...connectionOptions, refusal },
    );
    open.add(connection);
    if (timed) sweeper ??= setInterval(sweep, sweepMs);
    connection.serve().catch((error: unknown) => {
      // serve() handles its own errors; this is only so that nothing can end the process from here.
      log.error("Serving a connection failed: {error}", {
        error: describeError(error),
      });
    }).finally(() => {
      open.delete(connection);
      if (open.size === 0) allClosed?.resolve();
    });
  };

  const accepting = (async () => {
    while (!closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (closing || error instanceof Deno.errors.BadResource) return;
        log.warn("Could not accept a connection ({error}); trying again in {ms} ms", {
          error: String(error),
          ms: ACCEPT_RETRY_MS,
        });
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      if (closing) {
        conn.close();
        return;
      }
      serveOne(conn);
    }
  })();

  const finished = (async () => {
    await accepting;
    if (open.size > 0) {
      allClosed = Promise.withResolvers();
      await allClosed.promise;
    }
  })();

  return {
    addr: listener.addr as Deno.NetAddr,
    get connections() {
      return open.size;
    },
    finished,
    async shutdown() {
      if (!closing) {
        closing = true;
        try {
          listener.close();
        } catch {
          // already closed
        }
      }
      for (const connection of open) connection.finish();
      await finished;
      clearInterval(sweeper);
      sweeper = undefined;
    },
  };
}
