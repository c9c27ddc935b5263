/**
 * Where files live on disk: complete files under the cache directory in the same layout as the mirrors
 * (`core/os/x86_64/FILE`, `custom_repo/NAME/...`), downloads in progress under {@linkcode PARTIAL_DIR} beside
 * the record of what upstream announced (see `partial_records.ts`), so that a restart can resume them and
 * nothing partial is ever served as complete.
 *
 * @module
 */

import { join, resolve, sep } from "node:path";
import { PARTIAL_RECORD_SUFFIX } from "./partial_records.ts";

/**
 * The name of the folder inside the cache directory that holds downloads in progress (and temporary files of
 * imports). The only place that spells it: everything else imports it from here.
 */
export const PARTIAL_DIR = ".partial";

/** A complete file in the cache. */
export interface CachedFile {
  path: string;
  size: number;
  /** Modification time: upstream's `Last-Modified` when it sent one. */
  mtime: Date;
}

/** The paths of one cache directory, addressed by the safe path segments of a request target. */
export class CachePaths {
  /** The absolute cache directory. */
  readonly root: string;
  /** The absolute folder of downloads in progress. */
  readonly partialRoot: string;

  /** @param cacheDir The cache directory; made absolute. */
  constructor(cacheDir: string) {
    this.root = resolve(cacheDir);
    this.partialRoot = join(this.root, PARTIAL_DIR);
  }

  /** Where the complete file lives. */
  finalPath(segments: readonly string[]): string {
    return this.#inside(join(this.root, ...segments));
  }

  /** Where the file being downloaded lives. */
  partialPath(segments: readonly string[]): string {
    return this.#inside(join(this.partialRoot, ...segments));
  }

  /** Where the record of a download in progress lives. */
  recordPath(segments: readonly string[]): string {
    return `${this.partialPath(segments)}${PARTIAL_RECORD_SUFFIX}`;
  }

  #inside(path: string): string {
    if (!path.startsWith(this.root + sep)) {
      throw new Error(
        `Refusing a cache path outside the cache directory: ${path}; cache paths are made of the safe ` +
          "segments of a request target (see request_path.ts), never of raw input.",
      );
    }
    return path;
  }
}

/** True when something (a file, folder or link) is at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** True for the errors that mean "nothing there": the file or one of its folders does not exist. */
export function isMissing(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory;
}
