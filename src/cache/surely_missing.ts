/**
 * A cheap answer to "is nothing there?" before a synchronous `stat` or read that would fail. A failed
 * `Deno.statSync` or `Deno.readTextFileSync` builds an error object (its message, its class, a stack trace):
 * measured 150-250 us each in code that runs as rarely as a cache miss, where a C library `access` call answers
 * in a few microseconds without one. A cache miss asks twice before its mirror is asked (the complete file, the
 * record of a partial download).
 *
 * The check is injected: the serving process builds a fast one from the C library it loads anyway (see
 * `libcPathProbe` in src/server/libc.ts, passed down through the app's options); tests, scripts and processes
 * without that library use {@linkcode statPathProbe}, correct and slower. This module loads nothing (node's
 * `existsSync` would load `node:fs`: about 3 MiB of idle memory and 30-45 ms of start-up).
 *
 * @module
 */

/**
 * True when nothing is at `path` now (following symbolic links, as `stat` does: a dangling link is missing). A
 * file made right after this said so is found by the caller's next look; a false answer says nothing (the path
 * may also be unreadable or invalid, e.g. with a NUL byte), and the caller reads as before and reports what it
 * finds.
 */
export type PathProbe = (path: string) => boolean;

/**
 * The {@linkcode PathProbe} without the C library: a `Deno.statSync` whose failure is caught. Correct, and as
 * slow as the failed stat it stands for (its error object); true only for "not found" and "not a directory".
 */
export function statPathProbe(path: string): boolean {
  try {
    Deno.statSync(path);
    return false;
  } catch (error) {
    return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory;
  }
}
