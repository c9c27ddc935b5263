/**
 * The contract between the server's libc reads (`src/server/socket_reads.ts`, which main.ts makes) and flexo's
 * upstream client (`src/upstream/`), which reads a mirror's body with it when the bytes are there already.
 *
 * @module
 */

/**
 * Reads what a plain TCP connection's socket holds now, without waiting and without the runtime's read (whose
 * result comes only in a later turn of the event loop).
 */
export interface SocketReadNow {
  /**
   * Reads into `view` what the socket holds now: the count, 0 at the connection's end, or undefined when it
   * holds nothing (or cannot be read this way any more; the connection's own read then tells).
   */
  readNow(view: Uint8Array): number | undefined;
}
