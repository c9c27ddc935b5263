/**
 * Listening: one HTTP server per configured address, all answering with the same app, and a graceful shutdown.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { RequestHead } from "./http1_head.ts";
import type { ConnectionHandler } from "./http1_connection.ts";
import type { Admission, QuickAnswer, QuickOptions } from "./quick_answer.ts";
import { listenForClients } from "./client_connections.ts";
import { FileSender } from "./sendfile.ts";
import { NOT_STORED } from "../http/http_error.ts";
import { type LibcResult, openFilesLimit, openLibc } from "./libc.ts";

const log = getLogger(["flexo", "server"]);

/** A running server. */
export interface RunningServer {
  /** The addresses actually listened on (port resolved when 0 was asked for). */
  addresses: { hostname: string; port: number }[];
  /** Stops accepting connections and waits up to `graceMs` for running responses. */
  shutdown(options?: { graceMs?: number }): Promise<void>;
  /** Resolves when every listener has closed. */
  finished: Promise<void>;
  /** How many responses went out whole with sendfile (0 when it is off). */
  readonly sentWithSendfile: number;
}

/** What the server answers with: the app's side of the contract (see src/app/app.ts, which makes one). */
export interface ServedApp {
  /** Answers a request. */
  fetch: ConnectionHandler;
  /** The answer to a request that can be answered from memory, made from the parsed head alone. */
  quickAnswer?: (head: RequestHead, options: QuickOptions) => QuickAnswer | undefined;
  /** Whether a client, by its address, is served at all, and how (decided once per connection). */
  admit?: (remote: Deno.NetAddr) => Admission;
}

/** One listening address: a {@linkcode listenForClients} listener. */
interface Listening {
  addr: Deno.NetAddr;
  finished: Promise<void>;
  shutdown(): Promise<void>;
}

function onError(error: unknown): Response {
  log.error("Unexpected error while serving: {error}", { error: String(error) });
  return new Response("Internal error; see the proxy's log\n", {
    status: 500,
    headers: { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": NOT_STORED },
  });
}

/** A sender for large cached files, or undefined (saying why) when this process cannot use sendfile. */
function fileSender(opened: LibcResult): FileSender | undefined {
  if (opened.ok) {
    log.info("Cached files are sent with sendfile");
    return new FileSender(opened.libc);
  }
  log.info("Files are streamed through JavaScript, not sent with sendfile: {reason}", {
    reason: opened.reason,
  });
  return undefined;
}

/** Connections allowed when the open-files limit cannot be read (a limit of 1024, less the reserve). */
export const FALLBACK_MAX_CONNECTIONS = 768;

/**
 * The default of `max_connections` for an open-files limit of `limit` descriptors (undefined: unknown): the limit
 * less a reserve (a quarter, at least 64) for cache files, upstream sockets and the runtime's own, and at least 16.
 */
export function defaultMaxConnections(limit: number | undefined): number {
  if (limit === undefined) return FALLBACK_MAX_CONNECTIONS;
  return Math.max(16, limit - Math.max(64, Math.floor(limit / 4)));
}

/** This process's open-files limit, read with libc's getrlimit; undefined where libc cannot be loaded. */
function readOpenFilesLimit(opened: LibcResult): number | undefined {
  return opened.ok ? openFilesLimit(opened.libc) : undefined;
}

/**
 * Starts listening on each address with `port`, serving connections with flexo's own HTTP/1.1 layer (see
 * client_connections.ts): a client connection that does not complete a request head within `clientTimeoutMs`
 * (default 60 s; 0 means no limit), after connecting or after its previous response, or that takes no bytes of
 * its response for as long, is closed; at most `maxConnections` are open on each address (default: see
 * {@linkcode defaultMaxConnections}), a new one taking the place of the one waiting longest for a request; cached files are sent with sendfile(2) where this process can (unless
 * `sendfile` is false), otherwise copied in large pieces; small cached files are answered from memory.
 * `libc` is the C library (for sendfile and the open-files limit) when the caller has loaded it already:
 * each load costs 3-10 ms of start-up (main.ts loads it once for everything); loaded here when not given.
 */
export function startServer(
  app: ServedApp,
  options: {
    hostnames: readonly string[];
    port: number;
    clientTimeoutMs?: number;
    sendfile?: boolean;
    maxConnections?: number;
    libc?: LibcResult;
    /** This process's open-files limit when the caller has read it (main.ts, without making libc's functions). */
    openFilesLimit?: number;
    /** Called for each connection refused at `maxConnections` (main.ts counts it for /status and /metrics). */
    onConnectionRefused?: () => void;
    /** Called with the status of each request refused before the app (main.ts counts it, as for connections). */
    onRequestRefused?: (status: number) => void;
  },
): RunningServer {
  const timeoutMs = options.clientTimeoutMs ?? 60_000;
  let loaded = options.libc;
  const libc = () => loaded ??= openLibc();
  const maxConnections = options.maxConnections ??
    defaultMaxConnections(options.openFilesLimit ?? readOpenFilesLimit(libc()));
  log.info("At most {max} client connections are open at once (max_connections)", { max: maxConnections });
  const sender = options.sendfile ?? true ? fileSender(libc()) : undefined;
  const servers: Listening[] = [];
  const addresses: { hostname: string; port: number }[] = [];
  // "::" first: where it takes IPv4 too (net.ipv6.bindv6only = 0, Linux's default), an IPv4 address on the same
  // port is then covered by it; bound the other way round, "::" would find the port taken by flexo itself.
  const hostnames = [
    ...options.hostnames.filter((hostname) => hostname === "::"),
    ...options.hostnames.filter((hostname) => hostname !== "::"),
  ];
  for (const hostname of hostnames) {
    try {
      const server: Listening = listenForClients(app.fetch, {
        hostname,
        port: options.port,
        timeoutMs,
        onError,
        sender,
        quickAnswer: app.quickAnswer,
        admit: app.admit,
        maxConnections,
        onRefused: options.onConnectionRefused,
        onRefusedRequest: options.onRequestRefused,
      });
      servers.push(server);
      addresses.push({ hostname: server.addr.hostname, port: server.addr.port });
      log.info("Listening on http://{host}:{port}/", {
        host: hostname.includes(":") ? `[${hostname}]` : hostname,
        port: server.addr.port,
      });
    } catch (error) {
      const dualStack = servers.some((server) => server.addr.hostname === "::");
      if (error instanceof Deno.errors.AddrInUse && dualStack && !hostname.includes(":")) {
        log.info("{host}:{port} is served by the listener on [::], which takes IPv4 connections too", {
          host: hostname,
          port: options.port,
        });
        continue;
      }
      for (const s of servers) s.shutdown();
      if (error instanceof Deno.errors.AddrInUse) {
        throw new Error(
          `Port ${options.port} on ${hostname} is already in use: stop the other program or set another port ` +
            `(port in flexo.toml, FLEXO_PORT or --port).`,
        );
      }
      if (error instanceof Deno.errors.PermissionDenied) {
        throw new Error(
          `Not allowed to listen on ${hostname}:${options.port}: use a port above 1023 or run as root.`,
        );
      }
      if (error instanceof Deno.errors.AddrNotAvailable) {
        throw new Error(`${hostname} is not an address of this machine: fix listen_ip_address.`);
      }
      throw error;
    }
  }
  return {
    addresses,
    get sentWithSendfile() {
      return sender?.sent ?? 0;
    },
    finished: Promise.all(servers.map((s) => s.finished)).then(() => {}),
    async shutdown(shutdownOptions = {}) {
      const graceMs = shutdownOptions.graceMs ?? 10_000;
      const graceful = Promise.all(servers.map((s) => s.shutdown()));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), graceMs);
      });
      const outcome = await Promise.race([graceful.then(() => "done" as const), timeout]);
      clearTimeout(timer);
      if (outcome === "timeout") {
        log.warn("Transfers still running after {ms} ms; leaving them (partial downloads stay resumable)", {
          ms: graceMs,
        });
      }
    },
  };
}
