/**
 * One way to turn anything thrown into text for a log line or an error message. It has no imports, so that the
 * lowest modules (the libc binding among them) can use it too.
 *
 * @module
 */

/**
 * What an error says, for a log line, whatever was thrown: its message (with `stack`, its stack when it has one),
 * or the value as text, even one that `String()` cannot convert.
 */
export function describeError(error: unknown, options: { stack?: boolean } = {}): string {
  if (error instanceof Error) return (options.stack ? error.stack : undefined) ?? error.message;
  try {
    return String(error);
  } catch {
    return Object.prototype.toString.call(error);
  }
}
