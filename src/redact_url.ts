/**
 * Hiding the passwords in URLs before they are shown or logged: a mirror or custom repository may be given as
 * `http://user:password@host/...` (basic auth), and its URL appears on the status page, in `/status`, in
 * `/metrics` labels, in log lines and in error messages. Every such place shows {@linkcode redactUrl}'s text
 * (`http://user:***@host/...`, or `http://***@host/...` for a name alone, often a token); the secret stays only in
 * the URL that is fetched.
 *
 * @module
 */

/**
 * `scheme://user:password@` at the start of a URL, or anywhere in a text. As for a URL parser, the userinfo ends
 * at the last `@` before the authority ends (`/`, `?`, `#`, or a space in a text), and the user name at its first
 * `:`: both may hold an `@` (`http://me@home:p@ss@host/` is user `me@home`, password `p@ss`, which `new URL()`
 * takes). Ending either at the first `@` would show the rest of such a password, or all of it.
 */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/[^/\s:?#]*):[^/\s?#]*@/gi;

/**
 * `scheme://name@` with no password: the whole userinfo is hidden, for a name alone is often a token
 * (`https://TOKEN@host/`, as private mirrors and Git hosts take one). The `@` is the last of the authority.
 */
const NAME_ONLY = /\b([a-z][a-z0-9+.-]*:\/\/)[^/\s:?#]+@(?=[^/\s?#@]*(?:[/\s?#]|$))/gi;

/**
 * `url` with the password of its userinfo replaced by `***`, or the whole userinfo when it is a name alone (a URL
 * without userinfo comes back unchanged).
 */
export function redactUrl(url: string): string {
  return redactUrls(url);
}

/** `text` with every URL in it redacted as by {@linkcode redactUrl} (for messages and log lines). */
export function redactUrls(text: string): string {
  if (!text.includes("://") || !text.includes("@")) return text;
  return text.replace(USERINFO, "$1:***@").replace(NAME_ONLY, "$1***@");
}
