/**
 * The origin of the prefetch tests: a repository `flexotest` with tool 0.9-1 and other 1.0-1, served by a fake
 * mirror, that then publishes tool 0.10-1 and other 1.1-1.
 *
 * @module
 */

import { join } from "node:path";
import { type FakeMirror, startFakeMirror } from "./fake_mirror.ts";
import { addPackages, makeRepo, type RepoInfo } from "./make_repo.ts";

/** The cache folder of the repository. */
export const FOLDER = "flexotest/os/x86_64";
/** The version of tool a client fetches first. */
export const TOOL_OLD = "tool-0.9-1-x86_64.pkg.tar.zst";
/** The version of tool the origin publishes later. */
export const TOOL_NEW = "tool-0.10-1-x86_64.pkg.tar.zst";
/** The version of other the origin publishes later (no client uses other). */
export const OTHER_NEW = "other-1.1-1-x86_64.pkg.tar.zst";

/** A temporary directory with an empty `cache` folder, the origin's repository and its mirror. */
export interface PrefetchOrigin extends AsyncDisposable {
  dir: string;
  cacheDir: string;
  repo: RepoInfo;
  mirror: FakeMirror;
  /** Whether `fileName` of the repository's folder is in the cache. */
  cached(fileName: string): Promise<boolean>;
}

/** Builds the origin (tool 0.9-1 and other 1.0-1) in a new temporary directory; disposing removes it. */
export async function startPrefetchOrigin(): Promise<PrefetchOrigin> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-prefetch-" });
  const cacheDir = join(dir, "cache");
  await Deno.mkdir(cacheDir);
  const repo = await makeRepo(join(dir, "mirror"), {
    repo: "flexotest",
    packages: [{ name: "tool", version: "0.9-1", size: 2000 }, {
      name: "other",
      version: "1.0-1",
      size: 2000,
    }],
  });
  const mirror = await startFakeMirror(join(dir, "mirror"));
  return {
    dir,
    cacheDir,
    repo,
    mirror,
    cached: (fileName) =>
      Deno.stat(join(cacheDir, ...FOLDER.split("/"), fileName)).then(() => true, () => false),
    async [Symbol.asyncDispose]() {
      await mirror.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** The origin publishes tool 0.10-1 (of `toolSize` bytes) and other 1.1-1. */
export function publish(repo: RepoInfo, toolSize = 2000): Promise<RepoInfo> {
  return addPackages(repo, [
    { name: "tool", version: "0.10-1", size: toolSize },
    { name: "other", version: "1.1-1", size: 2000 },
  ]);
}
