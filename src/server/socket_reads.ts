/**
 * Reading what a connection's socket holds now with libc's `recv(MSG_DONTWAIT)`, for flexo's upstream client
 * (`UpstreamClientOptions.socketReads`): a mirror's body that arrives just behind its head, while the head is
 * being handled, is taken at once, where the runtime's read would hand it over only after that turn of the
 * event loop and its next one (about 0.15 ms of a cold miss, BENCHMARKS.md, session nine).
 *
 * The socket is found as the server finds its clients' (socket_finder.ts), and its cookie is checked before
 * every read, so a descriptor number that another socket took meanwhile is never read. Only plain TCP
 * connections may be read this way (a TLS connection's socket holds encrypted bytes); the upstream client asks
 * only for those. The runtime's read of the same connection stays correct: bytes taken here are simply not
 * there any more, and it waits for the next ones.
 *
 * @module
 */

import { errno, type LibcSymbols, LINUX } from "./libc.ts";
import { SocketFinder } from "./socket_finder.ts";
import type { SocketReadNow } from "../http/socket_read_now.ts";

/**
 * The `socketReads` of an upstream client on `libc`: undefined for a connection whose socket is not found
 * (it is then read by the runtime alone).
 */
export function libcSocketReads(
  libc: LibcSymbols,
  now: () => number = Date.now,
): (conn: Deno.Conn) => SocketReadNow | undefined {
  const finder = new SocketFinder(libc, now, "reading mirrors' sockets directly");
  return (conn) => {
    if (finder.disabled) return undefined;
    const socket = finder.find(conn);
    if (socket === undefined) return undefined;
    return {
      readNow(view) {
        if (view.length === 0 || !finder.isStill(socket)) return undefined;
        for (;;) {
          const read = Number(libc.recv(socket.fd, view, BigInt(view.length), LINUX.MSG_DONTWAIT));
          if (read >= 0) return read;
          // Nothing there (EAGAIN), or an error that the runtime's read of the connection reports.
          if (errno(libc) !== LINUX.EINTR) return undefined;
        }
      },
    };
  };
}
