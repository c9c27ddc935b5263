/**
 * The version of flexo, shown by `--version`, the status page and the `Server` header.
 *
 * @module
 */

/** The version of this program. Keep in step with `deno.json`. */
export const VERSION = "0.1.0";

/** How flexo names itself to mirrors (`User-Agent`), so that their operators can see who is fetching. */
export const USER_AGENT = `flexo/${VERSION}`;

/** A copy of `headers` with flexo's {@linkcode USER_AGENT}, for a request to a mirror. */
export function withUserAgent(headers: HeadersInit): Headers {
  const out = new Headers(headers);
  out.set("user-agent", USER_AGENT);
  return out;
}
