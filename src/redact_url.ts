/**
 * Hiding the passwords in URLs before they are shown or logged: a mirror or custom repository may be given as
 * `http://user:password@host/...` (basic auth), and its URL appears on the status page, in `/status`, in
 * `/metrics` labels, in log lines and in error messages. Every such place shows {@linkcode redactUrl}'s text
 * (`http://user:***@host/...`); the password stays only in the URL that is fetched.
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

/** `url` with the password of its userinfo replaced by `***` (a URL without one comes back unchanged). */
export function redactUrl(url: string): string {
  return redactUrls(url);
}

/** `text` with the password of every URL in it replaced by `***` (for messages and log lines). */
export function redactUrls(text: string): string {
  if (!text.includes("://")) return text;
  return text.replace(USERINFO, "$1:***@");
}
