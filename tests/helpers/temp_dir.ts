/**
 * A temporary directory that lives exactly as long as a test body.
 *
 * @module
 */

/** Runs `fn` with a new temporary directory and removes the directory afterwards, also on failure. */
export async function withTempDir(
  fn: (dir: string) => void | Promise<void>,
  options: { prefix?: string } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: options.prefix ?? "flexo-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
