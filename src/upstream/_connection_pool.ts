/**
 * Kept-alive connections to mirrors, by origin: a request takes the one used last (the least likely to have been
 * closed by the mirror meanwhile), and gives it back when its body has been read whole.
 *
 * @module
 */

import { closeQuietly } from "../close_quietly.ts";
import type { SocketReadNow } from "../http/socket_read_now.ts";

/** Where to connect: from a URL's scheme, host name and port. */
export interface ConnectTarget {
  tls: boolean;
  /** A name or an address (an IPv6 one without brackets). */
  hostname: string;
  port: number;
}

/** Opens a connection, given up on when `signal` aborts; the default is Deno's (TLS with its certificate store). */
export type Connect = (target: ConnectTarget, signal?: AbortSignal | null) => Promise<Deno.Conn>;

/**
 * `Deno.connect`, with TLS (`Deno.startTls`, speaking HTTP/1.1) for https. Deno tries a name's IPv6 and IPv4
 * addresses interleaved (Happy Eyeballs, RFC 8305), as the runtime's `fetch` does: a mirror with an IPv6 address
 * this machine cannot reach and an IPv4 one it can is reached. `caCerts` are trusted besides the runtime's
 * certificate store; `shutdownSocket` (libc's `shutdown`) ends a TLS handshake that an abort gave up on.
 */
export function denoConnect(
  options: { caCerts?: string[]; shutdownSocket?: (conn: Deno.Conn) => void } = {},
): Connect {
  return async (target, signal) => {
    const conn = await Deno.connect({
      hostname: target.hostname,
      port: target.port,
      transport: "tcp",
      signal: signal ?? undefined,
    });
    // A request goes out in one write; the flag only matters should it ever take two.
    conn.setNoDelay(true);
    if (!target.tls) return conn;
    // startTls takes the TCP connection over: after it, only closing the TLS one closes the socket.
    let tls: Deno.TlsConn | undefined;
    // The handshake has no signal of its own, and closing the TLS connection under it leaves its socket open in
    // the runtime until the mirror answers the ClientHello, which a silent one never does: on an abort the
    // socket is shut down too, which ends the handshake.
    const onAbort = () => {
      options.shutdownSocket?.(conn);
      closeQuietly(tls ?? conn);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      signal?.throwIfAborted();
      tls = await Deno.startTls(conn, {
        hostname: target.hostname,
        alpnProtocols: ["http/1.1"],
        caCerts: options.caCerts,
      });
      if (signal?.aborted) throw signal.reason;
      // Now rather than at the first write: a certificate the mirror fails with is a failure to connect.
      await tls.handshake();
      signal?.throwIfAborted();
      return tls;
    } catch (error) {
      closeQuietly(tls ?? conn);
      throw error;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  };
}

/** A connection and what the pool knows of it. */
export interface PooledConnection {
  conn: Deno.Conn;
  origin: string;
  /** When it was given back last (the pool's clock). */
  idleSince: number;
  /** The buffer its response heads are read into, kept with it (no allocation per request). */
  buffer?: Uint8Array;
  /** Reads of what its socket holds now (see `UpstreamClientOptions.socketReads`); null: none. */
  readsNow?: SocketReadNow | null;
}

/** Limits of a {@linkcode ConnectionPool}. */
export interface PoolOptions {
  /** Idle connections kept per origin at most. */
  maxIdlePerOrigin: number;
  /** A connection idle longer is closed instead of used (mirrors and NATs drop idle connections). */
  idleMs: number;
  now: () => number;
}

/** Idle connections by origin (`https://host:port`). */
export class ConnectionPool {
  #idle = new Map<string, PooledConnection[]>();
  #options: PoolOptions;
  #closed = false;
  #sweptAt = -Infinity;

  constructor(options: PoolOptions) {
    this.#options = options;
  }

  /** The idle connection to `origin` given back last, if one is young enough. */
  take(origin: string): PooledConnection | undefined {
    const idle = this.#idle.get(origin);
    if (idle === undefined) return undefined;
    const oldest = this.#options.now() - this.#options.idleMs;
    let found: PooledConnection | undefined;
    while (found === undefined && idle.length > 0) {
      const candidate = idle.pop()!;
      if (candidate.idleSince >= oldest) found = candidate;
      else closeQuietly(candidate.conn);
    }
    // The ones left are older still: those too old are closed, the others stay for the next requests.
    const young = idle.filter((connection) => connection.idleSince >= oldest);
    for (const connection of idle) if (connection.idleSince < oldest) closeQuietly(connection.conn);
    if (young.length === 0) this.#idle.delete(origin);
    else this.#idle.set(origin, young);
    return found;
  }

  /** Keeps `connection` for the next request to its origin, or closes it when the pool is full or closed. */
  give(connection: PooledConnection): void {
    this.#sweep();
    const idle = this.#idle.get(connection.origin) ?? [];
    if (this.#closed || idle.length >= this.#options.maxIdlePerOrigin) {
      closeQuietly(connection.conn);
      return;
    }
    connection.idleSince = this.#options.now();
    idle.push(connection);
    this.#idle.set(connection.origin, idle);
  }

  /**
   * Closes the connections idle too long, of every origin: a mirror that closed its end leaves ours open (its
   * descriptor) until then. Looked at when a connection is given back, at most twice per `idleMs`.
   */
  #sweep(): void {
    const now = this.#options.now();
    if (now - this.#sweptAt < this.#options.idleMs / 2) return;
    this.#sweptAt = now;
    for (const [origin, idle] of this.#idle) {
      const young = idle.filter((connection) => now - connection.idleSince <= this.#options.idleMs);
      for (const connection of idle) if (!young.includes(connection)) closeQuietly(connection.conn);
      if (young.length === 0) this.#idle.delete(origin);
      else this.#idle.set(origin, young);
    }
  }

  /** Idle connections now (for tests and the status). */
  get idleCount(): number {
    let count = 0;
    for (const idle of this.#idle.values()) count += idle.length;
    return count;
  }

  /** Closes the idle connections; later ones given back are closed too. */
  close(): void {
    this.#closed = true;
    for (const idle of this.#idle.values()) for (const connection of idle) closeQuietly(connection.conn);
    this.#idle.clear();
  }
}
