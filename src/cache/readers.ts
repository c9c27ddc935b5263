/**
 * Complete files that clients are reading: cleaning spares them (see `inUseBy` in `cleanup.ts`), so that a
 * response never loses its file half-way.
 *
 * @module
 */

/** How many clients read each complete file, by absolute path. */
export class Readers {
  #counts = new Map<string, number>();

  /** Marks `path` as being read by one more client; call the returned function when the response is sent. */
  begin(path: string): () => void {
    this.#counts.set(path, (this.#counts.get(path) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const left = (this.#counts.get(path) ?? 1) - 1;
      if (left <= 0) this.#counts.delete(path);
      else this.#counts.set(path, left);
    };
  }

  /** True while a client is reading `path`. */
  has(path: string): boolean {
    return this.#counts.has(path);
  }
}
