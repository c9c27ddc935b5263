/**
 * What a download tells its clients: the head the first usable mirror answered, its state for the status page
 * and the cache, and how it ended for its clients (see download.ts).
 *
 * @module
 */

/** What the first usable mirror answered. */
export interface DownloadHead {
  /** "not_modified" when upstream has nothing newer than `ifModifiedSince`. */
  status: "ok" | "not_modified";
  /** Length of the whole file, if upstream announced it. */
  total?: number;
  lastModified?: number;
  /** The mirror that answered. */
  mirror?: string;
}

/** The state of a download, for the status page and the cache: "complete" once the file is committed. */
export type DownloadState = "starting" | "streaming" | "complete" | "not_modified" | "failed";

/**
 * How a download ended for its clients. "complete" means that every byte was verified (size and SHA-256 as the
 * repository database says, or else the announced length) and may be sent: it comes before the commit to the
 * cache, which a client does not wait for.
 */
export type DownloadOutcome =
  | { type: "running" }
  | { type: "complete" }
  | { type: "not_modified" }
  | { type: "failed"; reason: string; error: Error };
