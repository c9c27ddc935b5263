/**
 * Hiding the passwords in URLs before they are shown or logged: a mirror or custom repository may be given as
 * `http://user:password@host/...` (basic auth), and its URL appears on the status page, in `/status`, in
 * `/metrics` labels, in log lines and in error messages. Every such place shows {@linkcode redactUrl}'s text
 * (`http://user:***@host/...`); the password stays only in the URL that is fetched.
 *
 * @module
 */

/** `scheme://user:password@` at the start of a URL, or anywhere in a text (up to the first `/`, `@` or space). */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/[^/\s@:]*):[^/\s@]*@/gi;

/** `url` with the password of its userinfo replaced by `***` (a URL without one comes back unchanged). */
export function redactUrl(url: string): string {
  return redactUrls(url);
}

/** `text` with the password of every URL in it replaced by `***` (for messages and log lines). */
export function redactUrls(text: string): string {
  if (!text.includes("://")) return text;
  return text.replace(USERINFO, "$1:***@");
}
