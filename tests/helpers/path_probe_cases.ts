/**
 * The cases every `PathProbe` (src/cache/surely_missing.ts) must answer alike, for each implementation's test.
 *
 * @module
 */

import { join } from "node:path";
import type { PathProbe } from "../../src/cache/surely_missing.ts";
import { assertEquals } from "./assert.ts";
import { withTempDir } from "./temp_dir.ts";

/**
 * Asserts that `probe` says "missing" for nothing there, a path under a file or a missing folder and a dangling
 * symbolic link, and not for a file, a link to it, a directory, a path with a NUL byte
 * or one too long for a path (left to the caller's read).
 */
export async function assertPathProbeCases(probe: PathProbe): Promise<void> {
  await withTempDir(async (dir) => {
    const file = join(dir, "file");
    await Deno.writeTextFile(file, "x");
    await Deno.mkdir(join(dir, "folder"));
    await Deno.symlink(file, join(dir, "link"));
    await Deno.symlink(join(dir, "gone"), join(dir, "dangling"));
    const answers = (names: string[]) => names.map((name) => [name, probe(join(dir, name))]);
    const missing = ["nothing", "no-folder/x", "file/x", "dangling", "nothing-é-ü"];
    assertEquals(answers(missing), missing.map((name) => [name, true]));
    const notMissing = ["file", "link", "folder", ".", "file\0", "nothing\0x", "long".repeat(1100)];
    assertEquals(answers(notMissing), notMissing.map((name) => [name, false]));
  });
}
