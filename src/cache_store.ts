/**
 * Where files live on disk: complete files under the cache directory in the same layout as the mirrors
 * (`core/os/x86_64/FILE`, `custom_repo/NAME/...`), downloads in progress under `.partial/` beside a small JSON
 * record of what upstream announced, so that a restart can resume them and nothing partial is ever served as
 * complete.
 *
 * @module
 */

import { dirname, join, resolve, sep } from "node:path";

/** What is remembered about a download in progress. */
export interface PartialMeta {
  /** Length upstream announced for the whole file, if it did. */
  total?: number;
  /** Upstream `Last-Modified` as milliseconds since the epoch. */
  lastModified?: number;
  /** Upstream `Content-Type`. */
  contentType?: string;
  /** The mirror the transfer started from. */
  mirror?: string;
}

/** A complete file in the cache. */
export interface CachedFile {
  path: string;
  size: number;
  /** Modification time: upstream's `Last-Modified` when it sent one. */
  mtime: Date;
}

/** The name of the folder inside the cache directory that holds downloads in progress. */
export const PARTIAL_DIR = ".partial";

/** Files on disk, addressed by the safe path segments of a request target. */
export class CacheStore {
  /** The absolute cache directory. */
  readonly root: string;
  #readers = new Map<string, number>();

  /** @param cacheDir The cache directory; made absolute. */
  constructor(cacheDir: string) {
    this.root = resolve(cacheDir);
  }

  /** Marks a complete file as being read by a client; call the returned function when the response is sent. */
  beginRead(path: string): () => void {
    this.#readers.set(path, (this.#readers.get(path) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const left = (this.#readers.get(path) ?? 1) - 1;
      if (left <= 0) this.#readers.delete(path);
      else this.#readers.set(path, left);
    };
  }

  /** True while a client is reading this complete file. */
  isBeingRead(path: string): boolean {
    return this.#readers.has(path);
  }

  /** Where the complete file lives. */
  finalPath(segments: readonly string[]): string {
    return this.#inside(join(this.root, ...segments));
  }

  /** Where the file being downloaded lives. */
  partialPath(segments: readonly string[]): string {
    return this.#inside(join(this.root, PARTIAL_DIR, ...segments));
  }

  /** Where the record of a download in progress lives. */
  metaPath(segments: readonly string[]): string {
    return `${this.partialPath(segments)}.meta.json`;
  }

  /** The complete file, or undefined if it is not cached. */
  async statComplete(segments: readonly string[]): Promise<CachedFile | undefined> {
    const path = this.finalPath(segments);
    try {
      const info = await Deno.stat(path);
      if (!info.isFile) return undefined;
      return { path, size: info.size, mtime: info.mtime ?? new Date(0) };
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        return undefined;
      }
      throw error;
    }
  }

  /** Size of the partial file on disk (0 when there is none). */
  async partialSize(segments: readonly string[]): Promise<number> {
    try {
      return (await Deno.stat(this.partialPath(segments))).size;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return 0;
      throw error;
    }
  }

  /** The record of an earlier download of this file, if one was left behind. */
  async readPartialMeta(segments: readonly string[]): Promise<PartialMeta | undefined> {
    try {
      const parsed = JSON.parse(await Deno.readTextFile(this.metaPath(segments)));
      if (typeof parsed !== "object" || parsed === null) return undefined;
      return {
        total: typeof parsed.total === "number" ? parsed.total : undefined,
        lastModified: typeof parsed.lastModified === "number" ? parsed.lastModified : undefined,
        contentType: typeof parsed.contentType === "string" ? parsed.contentType : undefined,
        mirror: typeof parsed.mirror === "string" ? parsed.mirror : undefined,
      };
    } catch {
      return undefined;
    }
  }

  /** Opens the partial file for appending, creating folders as needed. */
  async openPartial(segments: readonly string[], options: { truncate: boolean }): Promise<Deno.FsFile> {
    const path = this.partialPath(segments);
    await Deno.mkdir(dirname(path), { recursive: true });
    const file = await Deno.open(path, { write: true, create: true, truncate: options.truncate });
    if (!options.truncate) await file.seek(0, Deno.SeekMode.End);
    return file;
  }

  /** Saves what upstream announced, so that a restart can resume this download. */
  async writePartialMeta(segments: readonly string[], meta: PartialMeta): Promise<void> {
    const path = this.metaPath(segments);
    await Deno.mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(meta));
    await Deno.rename(tmp, path);
  }

  /**
   * Makes a finished download visible: moves it into place atomically, sets its modification time to
   * upstream's `Last-Modified`, and removes its record.
   */
  async commit(segments: readonly string[], options: { lastModified?: number }): Promise<CachedFile> {
    const from = this.partialPath(segments);
    const to = this.finalPath(segments);
    await Deno.mkdir(dirname(to), { recursive: true });
    if (options.lastModified !== undefined) {
      const time = new Date(options.lastModified);
      await Deno.utime(from, time, time);
    }
    await Deno.rename(from, to);
    await removeIfPresent(this.metaPath(segments));
    const info = await Deno.stat(to);
    return { path: to, size: info.size, mtime: info.mtime ?? new Date(0) };
  }

  /** Removes a partial download and its record. */
  async discardPartial(segments: readonly string[]): Promise<void> {
    await removeIfPresent(this.partialPath(segments));
    await removeIfPresent(this.metaPath(segments));
  }

  #inside(path: string): string {
    if (path !== this.root && !path.startsWith(this.root + sep)) {
      throw new Error(`Refusing a cache path outside the cache directory: ${path}`);
    }
    return path;
  }
}

/** Removes a file, ignoring that it does not exist. */
export async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}
