/**
 * Runs the real pacman client against a temporary root, for end-to-end tests.
 *
 * @module
 */

import { join } from "node:path";
import { assertToolsAvailable, type GpgSigner, stopGpgAgent, trustSigner } from "./make_repo.ts";

/** Options of {@linkcode makePacmanRoot}. */
export interface PacmanRootOptions {
  /** `Server` URL(s) for every repository, e.g. `http://127.0.0.1:PORT/$repo/os/$arch`; several are tried in order. */
  serverUrl: string | string[];
  /** Repository sections to write, e.g. `["core"]`. */
  repos: string[];
  /** `Never` (default: `SigLevel = Never`) or `Required` (`SigLevel = Required DatabaseOptional`, as on Arch). */
  sigLevel?: "Never" | "Required";
  /** The key pacman must trust; required with `sigLevel: "Required"`. */
  signer?: GpgSigner;
  /** `ParallelDownloads`; default 5 (pacman's usual setting). */
  parallelDownloads?: number;
  /** Extra lines for the `[options]` section, e.g. `["DisableDownloadTimeout"]`. */
  extraOptions?: string[];
  /** Directory to make the temporary root in; default the system's temporary directory. */
  parentDir?: string;
}

/** A temporary pacman root made by {@linkcode makePacmanRoot}. */
export interface PacmanRoot {
  /** The temporary directory (also pacman's RootDir). */
  dir: string;
  /** `<dir>/etc/pacman.conf` */
  configPath: string;
  /** DBPath, `<dir>/var/lib/pacman/` (sync databases land in `sync/`). */
  dbPath: string;
  /** CacheDir, `<dir>/var/cache/pacman/pkg/`, where `-Sw` puts packages (and `.part` files). */
  cacheDir: string;
  /** LogFile. */
  logFile: string;
  /** GPGDir, the root's own keyring. */
  gpgDir: string;
  /** HookDir. */
  hookDir: string;
  /** Stops gpg daemons of the root's keyring and deletes the directory. */
  remove(): Promise<void>;
  /** Same as `remove()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** What a pacman run produced. */
export interface PacmanResult {
  /** Exit code (non-zero when killed). */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
  /** True when pacman was killed because it ran longer than the timeout. */
  timedOut: boolean;
}

/** Options of {@linkcode runPacman}. */
export interface RunPacmanOptions {
  /** Kill pacman after this many milliseconds; default 60 000. */
  timeoutMs?: number;
}

let cachedVersion: Promise<[number, number, number]> | undefined;

/** The installed pacman's version as `[major, minor, patch]`, from `pacman --version`. */
export function pacmanVersion(): Promise<[number, number, number]> {
  cachedVersion ??= (async () => {
    await assertToolsAvailable(["pacman"]);
    const output = await new Deno.Command("pacman", { args: ["--version"], stdout: "piped", stderr: "piped" })
      .output();
    const text = new TextDecoder().decode(output.stdout);
    const match = /Pacman v(\d+)\.(\d+)\.(\d+)/.exec(text);
    if (!match) throw new Error(`Cannot read the version from "pacman --version": ${text.trim()}`);
    return [Number(match[1]), Number(match[2]), Number(match[3])];
  })();
  return cachedVersion;
}

/**
 * Creates a temporary pacman root with its own `etc/pacman.conf`, databases, cache, log, hooks and
 * keyring, all inside the temporary directory. With `sigLevel: "Required"` the keyring trusts `signer`.
 *
 * @param options Server URL, repositories, signature level and signer.
 */
export async function makePacmanRoot(options: PacmanRootOptions): Promise<PacmanRoot> {
  if (options.sigLevel === "Required" && !options.signer) {
    throw new Error(
      'makePacmanRoot: sigLevel "Required" needs a signer (from createGpgSigner) for the keyring',
    );
  }
  const [major] = await pacmanVersion();
  const dir = await Deno.makeTempDir({ dir: options.parentDir, prefix: "flexo-pacman-" });
  const root: PacmanRoot = {
    dir,
    configPath: join(dir, "etc", "pacman.conf"),
    dbPath: join(dir, "var", "lib", "pacman") + "/",
    cacheDir: join(dir, "var", "cache", "pacman", "pkg") + "/",
    logFile: join(dir, "var", "log", "pacman.log"),
    gpgDir: join(dir, "etc", "pacman.d", "gnupg") + "/",
    hookDir: join(dir, "etc", "pacman.d", "hooks") + "/",
    async remove() {
      await stopGpgAgent(root.gpgDir);
      await Deno.remove(dir, { recursive: true });
    },
    [Symbol.asyncDispose]() {
      return root.remove();
    },
  };
  for (const path of [root.dbPath, root.cacheDir, join(dir, "var", "log"), root.hookDir]) {
    await Deno.mkdir(path, { recursive: true });
  }
  await Deno.mkdir(root.gpgDir, { recursive: true, mode: 0o700 });
  if (options.signer) await trustSigner(root.gpgDir, options.signer);

  // Arch's default for signatures; databases are not signed on Arch, so they are only Optional.
  const sigLevel = options.sigLevel === "Required" ? "Required DatabaseOptional" : "Never";
  const servers = Array.isArray(options.serverUrl) ? options.serverUrl : [options.serverUrl];
  const lines = [
    "# Written by flexo's test helpers for one test run.",
    "[options]",
    `RootDir = ${dir}`,
    `DBPath = ${root.dbPath}`,
    `CacheDir = ${root.cacheDir}`,
    `LogFile = ${root.logFile}`,
    `GPGDir = ${root.gpgDir}`,
    `HookDir = ${root.hookDir}`,
    "Architecture = x86_64",
    `SigLevel = ${sigLevel}`,
    `ParallelDownloads = ${options.parallelDownloads ?? 5}`,
    // pacman 7 downloads in a sandbox as an unprivileged user, which fails in containers and temp roots.
    ...(major >= 7 ? ["DisableSandbox"] : []),
    ...(options.extraOptions ?? []),
    "",
  ];
  for (const repo of options.repos) {
    lines.push(`[${repo}]`, ...servers.map((url) => `Server = ${url}`), "");
  }
  await Deno.writeTextFile(root.configPath, lines.join("\n"));
  return root;
}

/**
 * Runs pacman with `--config <root's pacman.conf> --noconfirm --noprogressbar --color never` and the
 * given arguments, killing it after the timeout. Proxy environment variables are neutralised so that
 * pacman talks to 127.0.0.1 directly. When not running as root, pacman runs in a user namespace
 * (`unshare --map-root-user`), because `-S` refuses to run otherwise.
 *
 * @param root A root from {@linkcode makePacmanRoot}.
 * @param args pacman arguments, e.g. `["-Syw", "big"]`.
 * @param options Timeout.
 */
export async function runPacman(
  root: PacmanRoot,
  args: string[],
  options: RunPacmanOptions = {},
): Promise<PacmanResult> {
  const pacmanArgs = [
    "--config",
    root.configPath,
    "--noconfirm",
    "--noprogressbar",
    "--color",
    "never",
    ...args,
  ];
  const asRoot = Deno.uid() === 0;
  const child = new Deno.Command(asRoot ? "pacman" : "unshare", {
    args: asRoot ? pacmanArgs : ["--map-root-user", "--", "pacman", ...pacmanArgs],
    env: {
      LANG: "C",
      LC_ALL: "C",
      http_proxy: "",
      https_proxy: "",
      HTTP_PROXY: "",
      HTTPS_PROXY: "",
      all_proxy: "",
      ALL_PROXY: "",
      no_proxy: "*",
      NO_PROXY: "*",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
  }, options.timeoutMs ?? 60_000);
  try {
    const output = await child.output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
      timedOut,
    };
  } finally {
    clearTimeout(timer);
  }
}
