/**
 * The version of flexo, shown by `--version`, the status page and the `Server` header.
 *
 * @module
 */

/** The version of this program. Keep in step with `deno.json`. */
export const VERSION = "0.1.0";
