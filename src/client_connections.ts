/**
 * Accepting client connections one at a time so that a connection that never sends a complete request can be
 * closed. `Deno.serve` reads request heads without any time limit: a client that connects and says nothing, or
 * sends half a request head, would keep its connection (and a file descriptor) for as long as it likes. Here the
 * proxy accepts each TCP connection itself and hands it to Deno's HTTP machinery through
 * `serveHttpOnConnection`, an internal of Deno (`Deno[Deno.internal]`) that `node:http` uses as well; a
 * periodic sweep closes a connection with no request in progress when no request head has arrived within the
 * timeout, counted from when it connected or from when its previous response was sent.
 *
 * When a Deno release lacks that internal, {@linkcode canServeConnections} says so and the caller falls back to
 * `Deno.serve` without the timeout.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ClientSocket, FileSender } from "./sendfile.ts";
import { sendBelowServer, shouldSendfile } from "./sendfile_response.ts";

const log = getLogger(["flexo", "server"]);

/** A request handler, as `Deno.serve` takes it. */
export type ConnectionHandler = (
  req: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** What Deno's internal per-connection server returns. */
interface ConnectionServer {
  finished: Promise<void>;
  shutdown(): Promise<void>;
}

/** Deno's internal `serveHttpOnConnection(connection, signal, handler, onError, onListen)`. */
type ServeHttpOnConnection = (
  connection: Deno.Conn,
  signal: AbortSignal,
  handler: ConnectionHandler,
  onError: (error: unknown) => Response | Promise<Response>,
  onListen: () => void,
) => ConnectionServer;

/** Deno's per-connection server, if this Deno has one. */
function serveHttpOnConnection(): ServeHttpOnConnection | undefined {
  const internalKey = (Deno as unknown as { internal?: symbol }).internal;
  if (internalKey === undefined) return undefined;
  const internals = (Deno as unknown as Record<symbol, Record<string, unknown> | undefined>)[internalKey];
  const serve = internals?.serveHttpOnConnection;
  return typeof serve === "function" ? serve as ServeHttpOnConnection : undefined;
}

/** Whether this Deno can serve single connections, which {@linkcode listenForClients} needs. */
export function canServeConnections(): boolean {
  return serveHttpOnConnection() !== undefined;
}

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
 * request in progress and does not complete a request head within `timeoutMs`. With a `sender`, large cached
 * files go out with sendfile (see sendfile.ts), and a client that takes none of their bytes for `timeoutMs` is
 * cut off. Throws what `Deno.listen` throws (`AddrInUse`, `PermissionDenied`, ...), and when this Deno cannot
 * serve single connections.
 */
export function listenForClients(
  handler: ConnectionHandler,
  options: {
    hostname: string;
    port: number;
    timeoutMs: number;
    onError: (error: unknown) => Response | Promise<Response>;
    sender?: FileSender;
  },
): ClientListener {
  const serve = serveHttpOnConnection();
  if (serve === undefined) {
    throw new Error("This Deno has no per-connection HTTP serving; use Deno.serve instead.");
  }
  const listener = Deno.listen({ hostname: options.hostname, port: options.port, transport: "tcp" });
  let closing = false;

  /** One open connection; the sweep reads and the handler updates it. */
  interface Entry {
    abort: AbortController;
    server?: ConnectionServer;
    /** Requests in progress. */
    running: number;
    /** When the last request ended (or the connection opened). */
    idleSince: number;
    client: string;
  }
  // One set of small entries and one sweep over them, instead of a timer per request and several collections and
  // promise chains per connection: both cost CPU and garbage per request (see BENCHMARKS.md).
  const open = new Set<Entry>();
  let allClosed: PromiseWithResolvers<void> | undefined;
  const sweepMs = Math.max(10, Math.min(1_000, Math.floor(options.timeoutMs / 4)));
  let sweeper: ReturnType<typeof setInterval> | undefined;
  const sweep = () => {
    const now = performance.now();
    for (const entry of open) {
      if (entry.running > 0 || now - entry.idleSince < options.timeoutMs || entry.abort.signal.aborted) {
        continue;
      }
      log.debug("Closing a connection from {client}: no complete request within {ms} ms", {
        client: entry.client,
        ms: options.timeoutMs,
      });
      entry.abort.abort();
    }
    if (open.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };

  const sender = options.sender;
  const viaSendfile = (req: Request, response: Response, socketOf: () => ClientSocket | undefined) =>
    sender !== undefined && shouldSendfile(req, response, sender)
      ? sendBelowServer(response, { sender, socket: socketOf, stallMs: options.timeoutMs })
      : response;

  const serveOne = (conn: Deno.Conn) => {
    const entry: Entry = {
      abort: new AbortController(),
      running: 0,
      idleSince: performance.now(),
      client: (conn.remoteAddr as Deno.NetAddr).hostname,
    };
    const done = () => {
      if (--entry.running === 0) entry.idleSince = performance.now();
    };
    // The connection's socket, looked up once, when its first large file is sent (null: not found).
    let socket: ClientSocket | null | undefined;
    const socketOf = () => {
      if (socket === undefined) socket = sender?.findSocket(conn) ?? null;
      return socket ?? undefined;
    };
    const answer: ConnectionHandler = (req, info) => {
      entry.running++;
      info.completed.then(done, done);
      const response = handler(req, info);
      if (sender === undefined) return response;
      return response instanceof Response
        ? viaSendfile(req, response, socketOf)
        : response.then((r) => viaSendfile(req, r, socketOf));
    };
    try {
      entry.server = serve(conn, entry.abort.signal, answer, options.onError, () => {});
    } catch (error) {
      log.warn("Could not serve a connection: {error}", { error: String(error) });
      try {
        conn.close();
      } catch {
        // already closed
      }
      return;
    }
    open.add(entry);
    sweeper ??= setInterval(sweep, sweepMs);
    // A client that resets its connection rejects `finished`: that is the client's business, not an error.
    const forget = () => {
      open.delete(entry);
      if (open.size === 0) allClosed?.resolve();
    };
    entry.server.finished.then(forget, forget);
  };

  const accepting = (async () => {
    while (!closing) {
      let conn: Deno.Conn;
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
      clearInterval(sweeper);
      sweeper = undefined;
      await Promise.all([...open].map((entry) => entry.server?.shutdown().catch(() => {})));
      await finished;
    },
  };
}
