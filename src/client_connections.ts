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
  const open = new Set<Promise<void>>();
  const stoppers = new Set<() => Promise<void>>();
  let closing = false;

  // One sweep over the idle connections instead of a timer per request: setting and clearing a timer for every
  // request cost about a quarter of the JavaScript time of a small cache hit.
  const idle = new Map<AbortController, { running: number; idleSince: number; client: string }>();
  const sweepMs = Math.max(10, Math.min(1_000, Math.floor(options.timeoutMs / 4)));
  let sweeper: ReturnType<typeof setInterval> | undefined;
  const sweep = () => {
    const now = performance.now();
    for (const [abort, state] of idle) {
      if (state.running > 0 || now - state.idleSince < options.timeoutMs) continue;
      idle.delete(abort);
      log.debug("Closing a connection from {client}: no complete request within {ms} ms", {
        client: state.client,
        ms: options.timeoutMs,
      });
      abort.abort();
    }
    if (idle.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };

  const serveOne = (conn: Deno.Conn) => {
    const abort = new AbortController();
    const state = {
      running: 0,
      idleSince: performance.now(),
      client: (conn.remoteAddr as Deno.NetAddr).hostname,
    };
    const done = () => {
      if (--state.running === 0) state.idleSince = performance.now();
    };
    const sender = options.sender;
    // The connection's socket, looked up once, when its first large file is sent (null: not found).
    let socket: ClientSocket | null | undefined;
    const socketOf = () => {
      if (socket === undefined) socket = sender?.findSocket(conn) ?? null;
      return socket ?? undefined;
    };
    const viaSendfile = (req: Request, response: Response) =>
      sender !== undefined && shouldSendfile(req, response, sender)
        ? sendBelowServer(response, { sender, socket: socketOf, stallMs: options.timeoutMs })
        : response;
    const answer: ConnectionHandler = (req, info) => {
      state.running++;
      info.completed.then(done, done);
      const response = handler(req, info);
      if (sender === undefined) return response;
      return response instanceof Response
        ? viaSendfile(req, response)
        : response.then((r) => viaSendfile(req, r));
    };
    let server: ConnectionServer;
    try {
      server = serve(conn, abort.signal, answer, options.onError, () => {});
    } catch (error) {
      log.warn("Could not serve a connection: {error}", { error: String(error) });
      try {
        conn.close();
      } catch {
        // already closed
      }
      return;
    }
    idle.set(abort, state);
    sweeper ??= setInterval(sweep, sweepMs);
    const stop = () => {
      idle.delete(abort);
      return server.shutdown().catch(() => {});
    };
    stoppers.add(stop);
    // A client that resets its connection rejects `finished`: that is the client's business, not an error.
    const finished = server.finished.catch(() => {}).finally(() => {
      idle.delete(abort);
      stoppers.delete(stop);
      open.delete(finished);
    });
    open.add(finished);
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
    while (open.size > 0) await Promise.all([...open]);
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
      await Promise.all([...stoppers].map((stop) => stop()));
      await finished;
    },
  };
}
