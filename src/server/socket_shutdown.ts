/**
 * Shutting a mirror connection's socket down with libc's `shutdown`, for flexo's upstream client
 * (`UpstreamClientOptions.shutdownSocket`): a TLS handshake that an abort gave up on keeps its socket open in
 * the runtime even after the TLS connection is closed, for as long as the mirror does not answer the ClientHello
 * (Deno 2.9). Shut down, the socket ends the handshake, and the runtime closes it.
 *
 * The socket is found as the server finds its clients' (socket_finder.ts), and its cookie is checked before the
 * call, so a descriptor number that another socket took meanwhile is never shut down.
 *
 * @module
 */

import { type LibcSymbols, LINUX } from "./libc.ts";
import { SocketFinder } from "./socket_finder.ts";

/**
 * The `shutdownSocket` of an upstream client on `libc`: shuts both directions of the TCP connection `conn`'s
 * socket down (taken over by a TLS one or not); nothing when its socket is not found.
 */
export function libcSocketShutdown(
  libc: LibcSymbols,
  now: () => number = Date.now,
): (conn: Deno.Conn) => void {
  const finder = new SocketFinder(libc, now, "shutting mirrors' abandoned TLS handshakes down");
  return (conn) => {
    if (finder.disabled) return;
    const socket = finder.find(conn);
    if (socket !== undefined && finder.isStill(socket)) libc.shutdown(socket.fd, LINUX.SHUT_RDWR);
  };
}
