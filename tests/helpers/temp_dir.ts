/**
 * A temporary directory that lives exactly as long as a test body.
 *
 * @module
 */

import { join } from "node:path";

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

/** Every file below `dir`, as sorted "/"-separated relative paths. */
export async function filesBelow(dir: string, prefix = ""): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(join(dir, prefix))) {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory) found.push(...await filesBelow(dir, relative));
    else found.push(relative);
  }
  return found.sort();
}
