/**
 * A real headless browser for the status page's tests: Debian's chromium driven by playwright-core. A test
 * skips with a message when either is not available.
 *
 * @module
 */

/** Where Debian's chromium is. */
export const CHROMIUM = "/usr/bin/chromium";
/** How it is started: headless, with nothing that would reach out of the machine. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The playwright-core module. */
export type Playwright = typeof import("playwright-core");

/** playwright-core, or why the browser tests cannot run. */
export async function loadPlaywright(): Promise<Playwright | string> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    return `${CHROMIUM} is missing (apt-get install -y chromium)`;
  }
  try {
    return await import("playwright-core");
  } catch (error) {
    return `playwright-core cannot be loaded: ${(error as Error).message}`;
  }
}

/**
 * Waits until `condition` holds, asking every 50 ms for at most `timeoutMs`. (Playwright's waitForFunction
 * evaluates in the page, which the page's Content-Security-Policy rightly forbids.)
 */
export async function until(condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${condition}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
