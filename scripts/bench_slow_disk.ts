/**
 * A slow disk for the benchmark's cold-disk rows: `scripts/slow_disk.py` (a FUSE filesystem in Python) serves a
 * folder and waits in every read as an SD card would. The benchmark's machine may have a disk its host caches
 * (a VM's reads after `drop_caches` as fast as memory), where a server that reads on its event loop would not
 * stall and the rows would prove nothing; through this filesystem a page outside the page cache costs
 * milliseconds to read on any machine. Where FUSE or fusepy is missing the rows use the cache's own disk, and
 * say so.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "slow_disk.py");

/** How slow the disk is. */
export interface SlowDiskSpeed {
  /** Read rate, MB/s (an SD card: 15-25). */
  mbPerS: number;
  /** Wait before each read, ms. */
  latencyMs: number;
}

/** An SD card's speed: 20 MB/s and 1 ms per read call (about 7.5 ms per read of 128 KiB). */
export const SD_CARD: SlowDiskSpeed = { mbPerS: 20, latencyMs: 1 };

/** A mounted slow disk. */
export interface SlowDisk {
  /** Where its files are seen (slowly). */
  mountpoint: string;
  /** The folder it serves: files written here appear under {@linkcode SlowDisk.mountpoint}. */
  backing: string;
  /** How it was described to the reader of the figures. */
  description: string;
  /** Unmounts it and ends its process. */
  unmount(): Promise<void>;
}

/** A slow disk, or why there is none. */
export type SlowDiskMount = { ok: true; disk: SlowDisk } | { ok: false; reason: string };

const INSTALL = "apt-get install -y --no-install-recommends python3-fusepy";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function succeeds(command: string, args: string[]): Promise<boolean> {
  try {
    return (await new Deno.Command(command, { args, stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
}

/** A Python that can import fusepy (Debian's as `fusepy`, pip's as `fuse`), or undefined. */
async function pythonWithFusepy(): Promise<string | undefined> {
  const probe = "try:\n import fusepy\nexcept ImportError:\n import fuse";
  for (const python of ["/usr/bin/python3", "python3"]) {
    if (await succeeds(python, ["-c", probe])) return python;
  }
  return undefined;
}

/** Whether something is mounted at `mountpoint`. */
export async function mounted(mountpoint: string): Promise<boolean> {
  const mounts = await Deno.readTextFile("/proc/self/mountinfo");
  return mounts.split("\n").some((line) => line.split(" ")[4] === mountpoint);
}

/** What a slow disk needs and this machine lacks, or undefined when it has all (the mount may still fail). */
export async function slowDiskMissing(): Promise<string | undefined> {
  if (!(await exists("/dev/fuse"))) return "/dev/fuse is missing";
  if (Deno.uid() !== 0) return "not root (the mount needs it)";
  if ((await pythonWithFusepy()) === undefined) return `no python3 with fusepy (${INSTALL})`;
  return undefined;
}

/**
 * Mounts `scripts/slow_disk.py` under `work` (folders `slow-disk` and `slow-disk-backing`), waiting up to 5 s
 * for the mount to appear.
 */
export async function mountSlowDisk(work: string, speed: SlowDiskSpeed = SD_CARD): Promise<SlowDiskMount> {
  const missing = await slowDiskMissing();
  if (missing !== undefined) return { ok: false, reason: missing };
  const python = (await pythonWithFusepy())!;
  const mountpoint = join(work, "slow-disk");
  const backing = join(work, "slow-disk-backing");
  await Deno.mkdir(mountpoint, { recursive: true });
  await Deno.mkdir(backing, { recursive: true });
  const child = new Deno.Command(python, {
    args: [
      SCRIPT,
      backing,
      mountpoint,
      "--mb-per-s",
      String(speed.mbPerS),
      "--latency-ms",
      String(speed.latencyMs),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let exited = false;
  const status = child.status.finally(() => exited = true);
  const unmount = async () => {
    if (!exited && (await mounted(mountpoint)) && !(await succeeds("umount", [mountpoint]))) {
      await succeeds("umount", ["-l", mountpoint]);
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // ended meanwhile
      }
    }, 5000);
    await status;
    clearTimeout(timer);
    await stderr;
  };
  for (let waited = 0; waited < 5000 && !exited; waited += 50) {
    if (await mounted(mountpoint)) {
      const description = `slow_disk.py (FUSE, ${speed.mbPerS} MB/s, ${speed.latencyMs} ms per read)`;
      return { ok: true, disk: { mountpoint, backing, description, unmount } };
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  if (!exited) child.kill("SIGKILL");
  await status;
  const said = (await stderr).trim().split("\n").slice(-2).join(" ");
  return { ok: false, reason: `slow_disk.py did not mount${said ? `: ${said}` : ""} (${INSTALL})` };
}
