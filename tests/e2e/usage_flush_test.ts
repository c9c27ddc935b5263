/**
 * A graceful stop saves the package usage record (main.ts awaits `app.flush()` before it exits): a save that failed
 * while the proxy ran (a full disk) is tried again then, so the last fetches are not lost with the process.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { testBytes } from "../helpers/fake_fetch.ts";
import { startFlexo, writeTestConfig } from "../helpers/flexo_process.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { waitFor } from "../helpers/wait.ts";
import { USAGE_FILE } from "../../src/prefetch/package_usage.ts";
import { TEMPORARY_SUFFIX } from "../../src/atomic_write.ts";

Deno.test("main.ts on SIGTERM saves the package usage record whose last save failed", async () => {
  await withTempDir(async (work) => {
    const data = testBytes(10_000, 5);
    const mirror = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response(new Uint8Array(data)),
    );
    const cacheDir = join(work, "cache");
    const usagePath = join(cacheDir, USAGE_FILE);
    // A directory where the save's temporary file goes: the first save fails (and removes it, being empty), as
    // on a full disk that has room again later; nothing saves again until the stop.
    await Deno.mkdir(`${usagePath}${TEMPORARY_SUFFIX}`, { recursive: true });
    const config = await writeTestConfig(work, { cacheDir, mirror: `http://127.0.0.1:${mirror.addr.port}/` });
    await Deno.writeTextFile(config, "\nshutdown_drain_secs = 0\n[prefetch]\nenabled = true\n", {
      append: true,
    });
    const flexo = await startFlexo(config);
    try {
      const response = await fetch(`${flexo.url}/core/os/x86_64/zstd-1.5.6-1-x86_64.pkg.tar.zst`);
      assertEquals(new Uint8Array(await response.arrayBuffer()), data);
      await waitFor(
        "the save to fail",
        () => flexo.output().includes("Cannot save the package usage record"),
      );
    } finally {
      const status = await flexo.stop();
      await mirror.shutdown();
      assertEquals(status.code, 0, flexo.output());
    }
    const saved = JSON.parse(await Deno.readTextFile(usagePath));
    assert(saved.folders["core/os/x86_64"]?.zstd > 0, JSON.stringify(saved));
  });
});
