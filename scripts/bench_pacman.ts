/**
 * The benchmark's pacman rows (`scripts/bench.ts --only pacman`): the real pacman client, as users run it,
 * downloads a repository of small packages (`pacman -Syw`) straight from a mirror on 127.0.0.1, through nginx's
 * `proxy_cache` and through flexo, quiet and with the logs on, cold (the proxy has never seen the packages) and
 * warm (it has them all), with each `ParallelDownloads` setting asked for.
 *
 * The repository is built with the end-to-end tests' helpers (`tests/helpers/make_repo.ts`: bsdtar, zstd,
 * repo-add) and pacman runs with their private root (`tests/helpers/pacman.ts`). The mirror answers at once and
 * unpaced (a mirror on the local network), so that a proxy's own cost per file is not hidden behind the
 * origin's latency: with the other rows' 50 ms per answer, a warm proxy would beat the mirror by 50 ms per file
 * whatever it cost itself.
 *
 * @module
 */

import { join } from "node:path";
import {
  assertToolsAvailable,
  makeRepo,
  type PackageSpec,
  type RepoInfo,
  sha256File,
} from "../tests/helpers/make_repo.ts";
import { makePacmanRoot, pacmanVersion, runPacman } from "../tests/helpers/pacman.ts";
import { type Children, median, waitForOk } from "./bench_tools.ts";
import {
  logBytes,
  settleLog,
  type StartedProxy,
  startFlexo,
  startNginx,
  startOrigin,
} from "./bench_proxies.ts";

const KiB = 1024;
/** Package files are 4 to 124 KiB; the payload is that less about what tar and zstd add around it. */
const SMALLEST = 4 * KiB;
const LARGEST = 124 * KiB;
const PACKAGE_OVERHEAD = 1 * KiB;

/** Where pacman downloads from: the mirror itself or a proxy in front of it. */
export type PacmanSource = "direct" | "nginx" | "flexo" | "nginx_logged" | "flexo_logged";
const SOURCES: readonly PacmanSource[] = ["direct", "nginx", "flexo", "nginx_logged", "flexo_logged"];

/** One `pacman -Syw` of all the packages. */
export interface PacmanRun {
  /** The whole pacman command, from spawning it to its exit, seconds. */
  seconds: number;
  /** Requests the mirror saw for the packages during the run (through a warm proxy: 0). */
  upstreamPackageRequests: number;
}

/** The runs of one `ParallelDownloads` setting: per phase, per source, run by run. */
export interface PacmanPhases {
  cold: Partial<Record<PacmanSource, PacmanRun[]>>;
  warm: Partial<Record<PacmanSource, PacmanRun[]>>;
}

/** What the pacman rows measured. */
export interface PacmanMeasured {
  /** `pacman --version`, e.g. `6.0.2`. */
  pacman: string;
  /** The package files pacman downloads. */
  packages: { count: number; minBytes: number; maxBytes: number; totalBytes: number };
  /** Per `ParallelDownloads` value ("1", "5"). */
  parallel: Record<string, PacmanPhases>;
  /** How much the logs of the logged proxies grew over all the runs, bytes (nginx's access log, flexo's stderr). */
  logBytes: Partial<Record<PacmanSource, number>>;
}

/** Options of {@linkcode measurePacman}. */
export interface PacmanOptions {
  /** The nginx binary. */
  nginx: string;
  /** A directory of its own (created) for the repository, the proxies and pacman's roots. */
  work: string;
  /** How many packages. */
  packages: number;
  /** Cold runs per source and setting, each followed by a warm run. */
  runs: number;
  /** Rounds before those that are not counted (the first requests of a process run colder code). */
  warmupRounds: number;
  /** The `ParallelDownloads` values. */
  parallel: number[];
  /** Progress messages. */
  log: (message: string) => void;
}

/**
 * Runs `pacman -Syw --noconfirm <all packages>` against each source, with a fresh pacman root (empty database
 * and package cache) every time: per round and `ParallelDownloads` value, first cold against every source, then
 * warm against every source, the order reversed every other round. Every round uses a new copy of the
 * repository under a new name, so its packages are new to the running proxies (a cold cache without
 * restarting them). Every run's packages are checked against their SHA-256.
 */
export async function measurePacman(children: Children, options: PacmanOptions): Promise<PacmanMeasured> {
  await checkPacmanTools();
  const mirror = join(options.work, "mirror");
  const repo = await makeRepo(mirror, { repo: "benchrepo", packages: packageSpecs(options.packages) });
  const sizes = repo.packages.map((p) => p.size);
  options.log(`pacman: built ${sizes.length} packages, ${sizes.reduce((a, b) => a + b, 0)} bytes`);

  const origin = await startOrigin(children, { root: mirror, latencyMs: 0, rate: 0 });
  const nginxProxy = (name: string, accessLog: boolean) =>
    startNginx(children, {
      nginx: options.nginx,
      prefix: join(options.work, name),
      originPort: origin.port,
      accessLog,
    });
  const flexoProxy = (name: string, logged: boolean) =>
    startFlexo(children, { dir: join(options.work, name), originPort: origin.port, logged });
  const proxies: Record<Exclude<PacmanSource, "direct">, StartedProxy> = {
    nginx: await nginxProxy("nginx", false),
    flexo: await flexoProxy("flexo", false),
    nginx_logged: await nginxProxy("nginx-logged", true),
    flexo_logged: await flexoProxy("flexo-logged", true),
  };
  for (const proxy of Object.values(proxies)) {
    await waitForOk(`${proxy.base}__stats`, { timeoutMs: 30_000, child: proxy.child });
  }
  const bases: Record<PacmanSource, string> = {
    direct: origin.base,
    nginx: proxies.nginx.base,
    flexo: proxies.flexo.base,
    nginx_logged: proxies.nginx_logged.base,
    flexo_logged: proxies.flexo_logged.base,
  };

  const parallel: Record<string, PacmanPhases> = {};
  for (let round = -options.warmupRounds; round < options.runs; round++) {
    const order = round % 2 === 0 ? SOURCES : [...SOURCES].reverse();
    for (const downloads of options.parallel) {
      const name = `bench${downloads}x${round + options.warmupRounds}`;
      await copyRepo(repo, name);
      const phases = parallel[downloads] ??= { cold: {}, warm: {} };
      for (const phase of ["cold", "warm"] as const) {
        for (const source of order) {
          const result = await timePacman(repo, {
            base: bases[source],
            originBase: origin.base,
            repoName: name,
            parallelDownloads: downloads,
            work: options.work,
          });
          if (phase === "warm" && source !== "direct" && result.upstreamPackageRequests > 0) {
            options.log(
              `pacman: warning: ${source} asked the mirror for ${result.upstreamPackageRequests} packages ` +
                `in a warm run (${name}, ParallelDownloads = ${downloads})`,
            );
          }
          if (source === "nginx_logged" || source === "flexo_logged") {
            await settleLog(proxies[source], { quietMs: 200, timeoutMs: 60_000 });
          }
          if (round >= 0) (phases[phase][source] ??= []).push(result);
        }
      }
      const seconds = (source: PacmanSource) => median(phases.cold[source]?.map((r) => r.seconds) ?? []);
      options.log(
        `pacman: ${round < 0 ? "warm-up round" : `round ${round + 1} of ${options.runs}`}, ` +
          `ParallelDownloads = ${downloads}, cold medians so far: ` +
          SOURCES.map((s) => `${s} ${seconds(s).toFixed(3)} s`).join(", "),
      );
    }
  }

  const logs: Partial<Record<PacmanSource, number>> = {};
  for (const source of ["nginx_logged", "flexo_logged"] as const) {
    logs[source] = await logBytes(proxies[source]);
  }
  for (const proxy of Object.values(proxies)) await proxy.child.kill();
  await origin.child.kill();
  return {
    pacman: (await pacmanVersion()).join("."),
    packages: {
      count: sizes.length,
      minBytes: Math.min(...sizes),
      maxBytes: Math.max(...sizes),
      totalBytes: sizes.reduce((a, b) => a + b, 0),
    },
    parallel,
    logBytes: logs,
  };
}

/** Throws, naming the Debian packages to install, when pacman or a tool to build its repository is missing. */
export async function checkPacmanTools(): Promise<void> {
  await assertToolsAvailable(["pacman", "repo-add", "bsdtar", "zstd"]);
}

/**
 * `count` packages whose files are spread evenly between 4 and 124 KiB, in a mixed order of sizes (payloads of
 * random bytes, which zstd cannot shrink).
 */
export function packageSpecs(count: number): PackageSpec[] {
  if (!Number.isInteger(count) || count < 2) {
    throw new Error(`pacman rows: ${count} packages asked for; give a whole number of at least 2`);
  }
  return Array.from({ length: count }, (_, i) => {
    const step = (i * 37) % count; // 37 is prime: a permutation unless count is a multiple of it
    const fileSize = SMALLEST + Math.round(((LARGEST - SMALLEST) * step) / (count - 1));
    return {
      name: `bench-pkg-${String(i).padStart(3, "0")}`,
      version: "1.0-1",
      size: fileSize - PACKAGE_OVERHEAD,
    };
  });
}

/** Makes `<mirror>/<name>/os/<arch>/`: hard links of the packages and the database as `<name>.db`. */
async function copyRepo(repo: RepoInfo, name: string): Promise<void> {
  const dir = join(repo.dir, name, "os", repo.arch);
  await Deno.mkdir(dir, { recursive: true });
  for (const pkg of repo.packages) await Deno.link(pkg.path, join(dir, pkg.fileName));
  await Deno.copyFile(join(repo.osDir, `${repo.repo}.db.${repo.dbExtension}`), join(dir, `${name}.db`));
}

/** Requests the mirror counted for package files of one repository copy. */
async function packageRequests(originBase: string, repoName: string): Promise<number> {
  const response = await fetch(`${originBase}__stats`);
  if (response.status !== 200) {
    throw new Error(
      `the benchmark's origin answered ${response.status} to ${originBase}__stats; see its stderr`,
    );
  }
  const stats = (await response.json()) as { requests: Record<string, number> };
  let count = 0;
  for (const [path, requests] of Object.entries(stats.requests)) {
    if (path.startsWith(`/${repoName}/`) && path.endsWith(".pkg.tar.zst")) count += requests;
  }
  return count;
}

/** One `pacman -Syw` of every package of the repository copy `repoName` from `base`, in a fresh pacman root. */
async function timePacman(
  repo: RepoInfo,
  options: { base: string; originBase: string; repoName: string; parallelDownloads: number; work: string },
): Promise<PacmanRun> {
  await using root = await makePacmanRoot({
    serverUrl: `${options.base}$repo/os/$arch`,
    repos: [options.repoName],
    parallelDownloads: options.parallelDownloads,
    parentDir: options.work,
  });
  const before = await packageRequests(options.originBase, options.repoName);
  const began = performance.now();
  const result = await runPacman(root, ["-Syw", ...repo.packages.map((p) => p.name)], { timeoutMs: 300_000 });
  const seconds = (performance.now() - began) / 1000;
  const where = `pacman -Syw from ${options.base} (repository ${options.repoName}, ` +
    `ParallelDownloads = ${options.parallelDownloads})`;
  if (result.code !== 0 || result.timedOut) {
    throw new Error(
      `${where} failed with exit code ${result.code}${result.timedOut ? " after 300 s" : ""}; ` +
        `its output:\n${result.stdout}\n${result.stderr}`,
    );
  }
  for (const pkg of repo.packages) {
    const got = await sha256File(join(root.cacheDir, pkg.fileName)).catch(() => "missing");
    if (got !== pkg.sha256) {
      throw new Error(
        `${where} left ${pkg.fileName} ${got === "missing" ? "missing" : "with other bytes"} in its cache; ` +
          `pacman said:\n${result.stdout}\n${result.stderr}`,
      );
    }
  }
  const upstreamPackageRequests = (await packageRequests(options.originBase, options.repoName)) - before;
  return { seconds, upstreamPackageRequests };
}
