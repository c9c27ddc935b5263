import { assertEquals } from "./helpers/assert.ts";
import { closeQuietly } from "../src/close_quietly.ts";

Deno.test("closeQuietly() closes a file once, and ignores a second close and a missing resource", async () => {
  const path = await Deno.makeTempFile({ prefix: "flexo-close-" });
  try {
    const file = await Deno.open(path, { read: true });
    closeQuietly(file);
    closeQuietly(file);
    closeQuietly(undefined);
    let closes = 0;
    closeQuietly({ close: () => void closes++ });
    assertEquals(closes, 1);
  } finally {
    await Deno.remove(path);
  }
});
