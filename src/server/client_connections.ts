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
import { ClientConnection, type ConnectionHandler } from "./http1_connection.ts";
import type { Admission, QuickAnswer, QuickOptions } from "./quick_answer.ts";
import type { RequestHead } from "./http1_head.ts";
import { HttpDates } from "./http1_response.ts";
import { CopyBuffers } from "./file_copy.ts";
import { describeError } from "../logging.ts";
import type { FileSender } from "./sendfile.ts";
import { closeQuietly } from "../close_quietly.ts";

export type { ConnectionHandler } from "./http1_connection.ts";

const log = getLogger(["flexo", "server"]);

/** A listening socket whose connections are served with a client timeout. */
export interface ClientListener {
  /** The address actually listened on. */
  addr: Deno.NetAddr;
  /** How many client connections are open. */
  readonly connections: number;
  /**
   * How many connections the client timeout has closed so far. The sweep closes them at once when it runs, so
   * this count is exact right after the clock moves, before the clients see their connections end.
   */
  readonly timedOut: number;
  /**
   * How many new connections were closed at once because `maxConnections` were open and every one was
   * answering a request (none could give way). Not counted: the connections closed to make room.
   */
  readonly refused: number;
  /** Stops accepting; open connections finish their running responses, idle ones are closed. */
  shutdown(): Promise<void>;
  /** Resolves when the listener and every connection have closed. */
  finished: Promise<void>;
}

/** The first pause after a failed `accept` (such as "too many open files"); it doubles while accepts fail. */
const ACCEPT_RETRY_FIRST_MS = 10;
/** Failed accepts this far apart are one burst, logged once. */
const ACCEPT_BURST_QUIET_MS = 1_000;
/** The longest pause between attempts to accept while accepts fail. */
const ACCEPT_RETRY_MAX_MS = 1_000;
/**
 * At most one warning this often about connections refused at `maxConnections`: a proxy at its limit refuses
 * connection after connection, and one line each (or a line each time the limit is reached again, which can be
 * every other connection) would flood the log. Each warning counts those since the one before.
 */
export const REFUSED_WARNING_EVERY_MS = 60_000;

/**
 * The connection that gives way to a new one when every slot is taken: the one waiting longest for a request
 * head (a silent client, half a head, an idle keep-alive connection), or undefined when all are answering.
 */
export function yieldingConnection<T extends { busy: boolean; idleSince: number; closed: boolean }>(
  open: Iterable<T>,
): T | undefined {
  let oldest: T | undefined;
  for (const connection of open) {
    if (connection.busy || connection.closed) continue;
    if (oldest === undefined || connection.idleSince < oldest.idleSince) oldest = connection;
  }
  return oldest;
}

/** The clock of the client timeout and the timer of its sweep. */
export interface ConnectionClock {
  /** Milliseconds, monotonic. */
  now: () => number;
  /** Starts a one-shot timer. */
  setTimer: (callback: () => void, ms: number) => unknown;
  /** Cancels a timer started by `setTimer`. */
  clearTimer: (timer: unknown) => void;
}

const DEFAULT_CLOCK: ConnectionClock = {
  now: () => performance.now(),
  setTimer: (callback, ms) => setTimeout(callback, ms),
  clearTimer: (timer) => clearTimeout(timer as number),
};

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
    quickAnswer?: (head: RequestHead, options: QuickOptions) => QuickAnswer | undefined;
    sender?: FileSender;
    /**
     * Decides, as a connection is accepted, whether its client is served (see {@linkcode Admission}): a refusal
     * is the answer to each of its requests (so a refused client still learns why), and nothing else of the app
     * runs for it; `"each_request"` leaves every request of it to `handler`, none to `quickAnswer`.
     */
    admit?: (remote: Deno.NetAddr) => Admission;
    /**
     * At most this many connections are open; a new one beyond it takes the place of the connection waiting
     * longest for a request head (see {@linkcode yieldingConnection}), or is closed when every one is answering.
     * Default: no limit.
     */
    maxConnections?: number;
    /** Called for each connection refused at `maxConnections` (see {@linkcode ClientListener.refused}). */
    onRefused?: () => void;
    /** Called with the status of each request the connections refuse themselves (see `ConnectionOptions`). */
    onRefusedRequest?: (status: number) => void;
    /**
     * The clock of the timeout and the timer of its sweep; tests give their own, so that a timeout runs out when
     * they say. Default: `performance.now` and `setTimeout`.
     */
    clock?: ConnectionClock;
  },
): ClientListener {
  const clock = options.clock ?? DEFAULT_CLOCK;
  const listener = Deno.listen({ hostname: options.hostname, port: options.port, transport: "tcp" });
  let closing = false;
  // One set of connections and one sweep over them, instead of a timer per request: timers cost CPU and garbage
  // per request (see BENCHMARKS.md).
  // Each open connection with the end of its serve() (when its descriptor is gone).
  const open = new Map<ClientConnection, Promise<void>>();
  let allClosed: PromiseWithResolvers<void> | undefined;
  // A timeout of 0 (or less) means none: connections are never closed for waiting.
  const timed = options.timeoutMs > 0;
  const sweepMs = Math.max(10, Math.min(1_000, Math.floor(options.timeoutMs / 4)));
  let sweeper: unknown;
  let timedOut = 0;
  const scheduleSweep = () => {
    sweeper ??= clock.setTimer(() => {
      sweeper = undefined;
      sweep();
      if (open.size > 0) scheduleSweep();
    }, sweepMs);
  };
  const stopSweeping = () => {
    if (sweeper !== undefined) clock.clearTimer(sweeper);
    sweeper = undefined;
  };
  const sweep = () => {
    const now = clock.now();
    for (const connection of open.keys()) {
      // Closed, but its serve() has not ended yet: not closed again, nor counted twice.
      if (connection.closed) continue;
      const writing = connection.writingSince > 0 && now - connection.writingSince >= options.timeoutMs;
      const idle = !connection.busy && now - connection.idleSince >= options.timeoutMs;
      if (!writing && !idle) continue;
      log.debug("Closing a connection from {client}: {why} for {ms} ms", {
        client: connection.remoteAddr.hostname,
        why: writing ? "it took no bytes of its response" : "no complete request",
        ms: options.timeoutMs,
      });
      connection.close();
      timedOut++;
    }
  };
  const connectionOptions = {
    now: clock.now,
    dates: new HttpDates(),
    buffers: new CopyBuffers(),
    handler,
    onError: options.onError,
    quickAnswer: options.quickAnswer,
    sender: options.sender,
    onRefusedRequest: options.onRefusedRequest,
  };

  const maxConnections = options.maxConnections ?? Infinity;
  /** Connections closed at once because every slot was answering: in all, and since the last warning. */
  let refused = 0;
  let refusedUnreported = 0;
  let lastRefusalWarning = -Infinity;
  /**
   * Closes the connection waiting longest for a request, to make room for another; resolves when its descriptor
   * is gone. Undefined when every open connection is answering a request.
   */
  const makeRoom = (why: string): Promise<void> | undefined => {
    const victim = yieldingConnection(open.keys());
    if (victim === undefined) return undefined;
    log.debug("Closing a connection from {client} waiting for a request, to make room: {why}", {
      client: victim.remoteAddr.hostname,
      why,
    });
    // It keeps its place until serve() has ended and its descriptor is gone.
    victim.close();
    return open.get(victim);
  };

  /** Serves `conn`; when it takes the place of another connection, resolves once that one's descriptor is gone. */
  const serveOne = async (conn: Deno.TcpConn): Promise<void> => {
    const room = open.size >= maxConnections
      ? makeRoom(`max_connections (${maxConnections}) reached`)
      : undefined;
    if (open.size >= maxConnections && room === undefined) {
      refused++;
      refusedUnreported++;
      options.onRefused?.();
      const now = clock.now();
      if (now - lastRefusalWarning >= REFUSED_WARNING_EVERY_MS) {
        log.warn(
          "All {max} connections (max_connections) are answering requests: {count} new connection(s) closed at " +
            "once since the last such warning (at most one a minute; flexo_connections_refused_total counts " +
            "them). Raise max_connections and the open-files limit, or spread the clients over more nodes",
          { max: maxConnections, count: refusedUnreported },
        );
        lastRefusalWarning = now;
        refusedUnreported = 0;
      }
      conn.close();
      return;
    }
    // Without TCP_NODELAY, a response's last small segment waits until the client acknowledges the one before,
    // and clients delay that acknowledgement by ~40 ms: a stall per file on a kept-alive connection.
    conn.setNoDelay(true);
    const admission = options.admit?.(conn.remoteAddr as Deno.NetAddr);
    const connection = new ClientConnection(
      conn,
      admission === undefined
        ? connectionOptions
        : admission === "each_request"
        ? { ...connectionOptions, quickAnswer: undefined }
        : { ...connectionOptions, refusal: admission },
    );
    if (timed) scheduleSweep();
    const served = connection.serve().catch((error: unknown) => {
      // serve() handles its own errors; this is only so that nothing can end the process from here.
      log.error("Serving a connection failed: {error}", {
        error: describeError(error),
      });
    }).finally(() => {
      open.delete(connection);
      if (open.size === 0) allClosed?.resolve();
    });
    open.set(connection, served);
    // A closed connection holds its descriptor until its pending read ends: accept no more until then.
    await room;
  };

  const accepting = (async () => {
    // Failed accepts in the current burst (which ends after a quiet second), and the pause before the next try.
    let failures = 0;
    let lastFailure = 0;
    let retryMs = ACCEPT_RETRY_FIRST_MS;
    while (!closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (closing || error instanceof Deno.errors.BadResource) return;
        if (failures++ === 0) {
          log.warn("Could not accept a connection ({error}); trying again with growing pauses", {
            error: describeError(error),
          });
        }
        lastFailure = clock.now();
        // Out of descriptors, say: a connection waiting for a request gives its descriptor to the next client.
        await makeRoom("accepting failed");
        await new Promise<void>((resolve) => clock.setTimer(resolve, retryMs));
        retryMs = Math.min(retryMs * 2, ACCEPT_RETRY_MAX_MS);
        continue;
      }
      retryMs = ACCEPT_RETRY_FIRST_MS;
      if (failures > 0 && clock.now() - lastFailure >= ACCEPT_BURST_QUIET_MS) {
        log.info("Accepting connections again; {count} attempts to accept failed", { count: failures });
        failures = 0;
      }
      if (closing) {
        conn.close();
        return;
      }
      await serveOne(conn);
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
    get timedOut() {
      return timedOut;
    },
    get refused() {
      return refused;
    },
    finished,
    async shutdown() {
      if (!closing) {
        closing = true;
        closeQuietly(listener);
      }
      for (const connection of open.keys()) connection.finish();
      await finished;
      stopSweeping();
    },
  };
}
