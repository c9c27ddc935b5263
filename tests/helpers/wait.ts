/**
 * Waiting in tests without exact timing: poll a condition up to a deadline, or check that an event that has
 * happened did not settle a promise.
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

/**
 * Whether `promise` has settled once every reaction already queued has run: a check, after an event that has
 * happened (a download ended, a clock moved), that the event did not settle it. It lets one turn of the event
 * loop pass (a zero timer) and waits for no real time.
 */
export async function settledNow(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  await new Promise((resolve) => setTimeout(resolve, 0));
  return settled;
}
