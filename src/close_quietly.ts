/**
 * The one way flexo closes a file, socket, listener or watcher that may be closed already.
 *
 * @module
 */

/** Closes `resource`, if there is one; one already closed is fine (closing it again throws, and is ignored). */
export function closeQuietly(resource: { close(): void } | undefined): void {
  try {
    resource?.close();
  } catch {
    // already closed
  }
}
