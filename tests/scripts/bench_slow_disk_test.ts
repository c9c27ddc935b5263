/**
 * The benchmark's slow disk (`scripts/slow_disk.py` mounted by `scripts/bench_slow_disk.ts`): it serves its
 * backing folder through FUSE and keeps the kernel's page cache, which the cold-disk rows rely on. Skipped where
 * FUSE, root or fusepy is missing (`apt-get install -y --no-install-recommends python3-fusepy`); no timing.
 */

import { join } from "node:path";
import { mounted, mountSlowDisk, slowDiskMissing } from "../../scripts/bench_slow_disk.ts";
import { LIBC_PATHS, LINUX, openLibc } from "../../src/server/libc.ts";
import { MincoreResidency } from "../../src/server/page_cache.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const MISSING = await slowDiskMissing();

Deno.test({
  name: "mountSlowDisk() serves the backing folder's files through the page cache, and unmount() ends it" +
    (MISSING ? ` (skipped: ${MISSING})` : ""),
  ignore: MISSING !== undefined,
  fn: async () => {
    await withTempDir(async (dir) => {
      const mount = await mountSlowDisk(dir, { mbPerS: 1000, latencyMs: 0 });
      assert(mount.ok, mount.ok ? "" : mount.reason);
      const { disk } = mount;
      try {
        const bytes = randomBytes(300_000);
        await Deno.writeFile(join(disk.backing, "file"), bytes);
        const loaded = openLibc(LIBC_PATHS);
        if (!loaded.ok) throw new Error(loaded.reason);
        const libc = loaded.libc;
        const fd = libc.open(
          new TextEncoder().encode(join(disk.mountpoint, "file") + "\0"),
          LINUX.O_RDONLY_CLOEXEC,
        );
        assert(fd >= 0);
        try {
          const residency = new MincoreResidency(libc);
          assertEquals(
            residency.residentBytes(fd, 0, bytes.length),
            0,
            "never read through the mount: not in memory",
          );
          assertEquals(await Deno.readFile(join(disk.mountpoint, "file")), bytes);
          assertEquals(
            residency.residentBytes(fd, 0, bytes.length),
            bytes.length,
            "read once: in the page cache",
          );
        } finally {
          libc.close(fd);
        }
        await Deno.writeFile(join(disk.mountpoint, "written"), bytes.subarray(0, 1000));
        assertEquals(
          await Deno.readFile(join(disk.backing, "written")),
          bytes.subarray(0, 1000),
          "writes pass",
        );
      } finally {
        await disk.unmount();
      }
      assert(!(await mounted(disk.mountpoint)), "unmounted");
    });
  },
});
