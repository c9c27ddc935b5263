/**
 * Waiting in tests without exact timing: poll a condition up to a deadline, or check that a promise is still
 * pending after a while.
 *
 * @module
 */

/** Polls `check` every 10 ms until it holds; fails naming `what` after `ms` milliseconds (default 10 s). */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** True when `promise` is still pending after `ms` milliseconds. */
export async function stillPending(promise: Promise<unknown>, ms = 100): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const pending = Symbol("pending");
  const result = await Promise.race([
    promise.then(() => undefined, () => undefined),
    new Promise((resolve) => (timer = setTimeout(() => resolve(pending), ms))),
  ]);
  clearTimeout(timer);
  return result === pending;
}
