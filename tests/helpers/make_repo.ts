/**
 * Builds real pacman test repositories at test time: packages made with `bsdtar` and `zstd`, databases
 * made with `repo-add`, laid out like a mirror (`<dir>/<repo>/os/<arch>/`), optionally with detached
 * signatures made by a throwaway GnuPG key.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { writeAll } from "../../src/write_all.ts";

/** One package to build. */
export interface PackageSpec {
  /** Package name, e.g. `big`. */
  name: string;
  /** Full version `[epoch:]pkgver-pkgrel`, e.g. `1:2.0-1`. */
  version: string;
  /** Payload size in bytes (pseudo-random, incompressible, deterministic per name and version). Default 4096. */
  size?: number;
  /** Dependencies written as `depend` lines into `.PKGINFO`. */
  depends?: string[];
}

/** One package file of a built repository. */
export interface RepoPackage {
  /** `<name>-<version>-<arch>.pkg.tar.zst` */
  fileName: string;
  /** Absolute path of the package file. */
  path: string;
  /** Size of the package file in bytes. */
  size: number;
  /** Hex SHA-256 of the package file. */
  sha256: string;
  /** Package name. */
  name: string;
  /** Full version as given in the spec. */
  version: string;
  /** Path of the detached `.sig` file when the repository is signed. */
  signaturePath?: string;
}

/** A repository built by {@linkcode makeRepo}. */
export interface RepoInfo {
  /** The mirror root: serve this directory. */
  dir: string;
  /** Repository name. */
  repo: string;
  /** Architecture, e.g. `x86_64`. */
  arch: string;
  /** `<dir>/<repo>/os/<arch>`, where packages and databases live. */
  osDir: string;
  /** Extension of the real database files (`<repo>.db` is a symlink to `<repo>.db.<ext>`). */
  dbExtension: DbExtension;
  /** The signer used for the packages, if any. */
  signer?: GpgSigner;
  /** Whether the database carries the signatures (`%PGPSIG%`); see {@linkcode MakeRepoOptions.embedSignatures}. */
  embedSignatures?: boolean;
  /** Every package currently in the database, in build order. */
  packages: RepoPackage[];
}

/** Compression of the database files that `repo-add` writes. */
export type DbExtension = "tar.gz" | "tar.zst" | "tar.xz" | "tar.bz2";

/** Options of {@linkcode makeRepo}. */
export interface MakeRepoOptions {
  /** Repository name, e.g. `core`. */
  repo: string;
  /** Architecture; default `x86_64`. */
  arch?: string;
  /** Packages to build. */
  packages: PackageSpec[];
  /** Sign every package with a detached `.sig` file (not embedded in the database, so pacman downloads it). */
  sign?: GpgSigner;
  /**
   * With `sign`: sign before repo-add, which then embeds each signature in the database as `%PGPSIG%` (the
   * base64 of the `.sig` file), as Arch's databases carry them; the `.sig` files stay beside the packages.
   */
  embedSignatures?: boolean;
  /** Database compression; default `tar.gz` like Arch. */
  dbExtension?: DbExtension;
}

/** A throwaway GnuPG key that signs files. */
export interface GpgSigner {
  /** The temporary GNUPGHOME holding the secret key. */
  gnupgHome: string;
  /** Full fingerprint of the key. */
  fingerprint: string;
  /** Path of the ASCII-armored public key. */
  publicKeyPath: string;
  /** Writes a detached binary signature `<file>.sig` and returns its path. */
  sign(file: string): Promise<string>;
  /** Stops the gpg-agent of the temporary GNUPGHOME (the directory itself is left to the caller). */
  close(): Promise<void>;
}

const DEBIAN_PACKAGE_OF: Record<string, string> = {
  pacman: "pacman-package-manager",
  "repo-add": "pacman-package-manager",
  bsdtar: "libarchive-tools",
  zstd: "zstd",
  gpg: "gnupg",
  gpgconf: "gnupg",
};

/** A fixed build date so that package files are reproducible. */
const BUILD_DATE = 1700000000;
const PAYLOAD_CHUNK = 1 << 20;

/**
 * Throws when one of the command line tools is not on PATH, naming the Debian package to install.
 *
 * @param tools Program names, e.g. `["bsdtar", "zstd"]`.
 * @param options `searchPath`: directories to search instead of `$PATH` (colon separated).
 */
export async function assertToolsAvailable(
  tools: string[],
  options: { searchPath?: string } = {},
): Promise<void> {
  const searchPath = options.searchPath ?? Deno.env.get("PATH") ?? "";
  const missing: string[] = [];
  for (const tool of tools) {
    if (!(await findOnPath(tool, searchPath))) missing.push(tool);
  }
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((tool) => DEBIAN_PACKAGE_OF[tool] ?? tool))];
  throw new Error(
    `Missing test tool(s): ${missing.join(", ")} not found on PATH. ` +
      `Install them with: apt-get install -y --no-install-recommends ${packages.join(" ")}`,
  );
}

async function findOnPath(tool: string, searchPath: string): Promise<string | undefined> {
  for (const dir of searchPath.split(":")) {
    if (!dir) continue;
    try {
      const info = await Deno.stat(join(dir, tool));
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return join(dir, tool);
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Runs a program and throws with its output when it fails. */
async function run(
  program: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; stdin?: string } = {},
): Promise<string> {
  const child = new Deno.Command(program, {
    args,
    cwd: options.cwd,
    env: { LANG: "C", LC_ALL: "C", ...options.env },
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const output = await child.output();
  const decoder = new TextDecoder();
  if (!output.success) {
    throw new Error(
      `${program} ${args.join(" ")} failed with exit code ${output.code}: ` +
        `${decoder.decode(output.stderr).trim()} ${decoder.decode(output.stdout).trim()}`,
    );
  }
  return decoder.decode(output.stdout);
}

/**
 * Builds a repository below `dir` as a mirror lays it out: `<dir>/<repo>/os/<arch>/` with the package
 * files, `<repo>.db` and `<repo>.files` (symlinks to `.db.tar.gz` etc., as `repo-add` makes them) and,
 * when `sign` is given, a `.sig` file next to every package.
 *
 * @param dir Mirror root directory (created if missing).
 * @param options Repository name, architecture, packages, signer and database compression.
 * @returns What was built, with the SHA-256 of every package file.
 */
export async function makeRepo(dir: string, options: MakeRepoOptions): Promise<RepoInfo> {
  const arch = options.arch ?? "x86_64";
  const info: RepoInfo = {
    dir,
    repo: options.repo,
    arch,
    osDir: join(dir, options.repo, "os", arch),
    dbExtension: options.dbExtension ?? "tar.gz",
    signer: options.sign,
    embedSignatures: options.embedSignatures,
    packages: [],
  };
  await Deno.mkdir(info.osDir, { recursive: true });
  return await addPackages(info, options.packages);
}

/**
 * Builds more packages into an existing repository and updates its database, as when a repository
 * changes upstream. A package with the name of an existing one replaces it in the database (the old file
 * stays on disk, as on a mirror shortly after an update). The database files get a modification time at
 * least one second later than before, so that `Last-Modified` / `If-Modified-Since` see the change.
 *
 * @param repoInfo The repository from {@linkcode makeRepo} or an earlier call.
 * @param specs Packages to add.
 * @returns The updated repository description (a new object).
 */
export async function addPackages(repoInfo: RepoInfo, specs: PackageSpec[]): Promise<RepoInfo> {
  await assertToolsAvailable(["bsdtar", "zstd", "repo-add"]);
  const dbFile = join(repoInfo.osDir, `${repoInfo.repo}.db.${repoInfo.dbExtension}`);
  const filesFile = join(repoInfo.osDir, `${repoInfo.repo}.files.${repoInfo.dbExtension}`);
  const previousMtime = await mtimeOf(dbFile);

  const built: RepoPackage[] = [];
  for (const spec of specs) built.push(await buildPackage(repoInfo.osDir, repoInfo.arch, spec));
  // repo-add (6.0) embeds the .sig it finds beside a package; signing after it keeps them out of the database:
  // pacman then has to download every .sig file.
  const signer = repoInfo.signer;
  if (signer && repoInfo.embedSignatures) {
    for (const pkg of built) pkg.signaturePath = await signer.sign(pkg.path);
  }
  await run("repo-add", ["-q", "--nocolor", dbFile, ...built.map((pkg) => pkg.path)]);
  if (signer && !repoInfo.embedSignatures) {
    for (const pkg of built) pkg.signaturePath = await signer.sign(pkg.path);
  }
  if (previousMtime !== undefined) {
    const seconds = Math.max(Math.floor(Date.now() / 1000), Math.floor(previousMtime / 1000) + 1);
    await Deno.utime(dbFile, seconds, seconds);
    await Deno.utime(filesFile, seconds, seconds);
  }

  const names = new Set(built.map((pkg) => pkg.name));
  return {
    ...repoInfo,
    packages: [...repoInfo.packages.filter((pkg) => !names.has(pkg.name)), ...built],
  };
}

async function mtimeOf(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).mtime?.getTime();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

const NAME_PATTERN = /^[a-z0-9@_+][a-z0-9@._+-]*$/;
const VERSION_PATTERN = /^(\d+:)?[A-Za-z0-9._+~]+-[0-9][0-9.]*$/;

async function buildPackage(osDir: string, arch: string, spec: PackageSpec): Promise<RepoPackage> {
  if (!NAME_PATTERN.test(spec.name)) {
    throw new Error(`Invalid package name "${spec.name}": use lower case letters, digits and @._+-`);
  }
  if (!VERSION_PATTERN.test(spec.version)) {
    throw new Error(
      `Invalid package version "${spec.version}": expected [epoch:]pkgver-pkgrel such as 1:2.0-1`,
    );
  }
  const size = spec.size ?? 4096;
  const fileName = `${spec.name}-${spec.version}-${arch}.pkg.tar.zst`;
  const path = join(osDir, fileName);
  const work = await Deno.makeTempDir({ prefix: "flexo-pkg-" });
  try {
    const root = join(work, "root");
    const payloadDir = join(root, "usr", "share", "flexo-test", spec.name);
    await Deno.mkdir(payloadDir, { recursive: true });
    const payloadPath = join(payloadDir, "payload.bin");
    await writePayload(payloadPath, size, seedOf(`${spec.name}-${spec.version}`));
    await Deno.writeTextFile(join(root, ".PKGINFO"), pkginfo(spec, arch, size));
    for (
      const entry of [
        ".PKGINFO",
        "usr",
        "usr/share",
        "usr/share/flexo-test",
        `usr/share/flexo-test/${spec.name}`,
      ]
    ) {
      await Deno.utime(join(root, entry), BUILD_DATE, BUILD_DATE);
    }
    await Deno.utime(payloadPath, BUILD_DATE, BUILD_DATE);
    await run("bsdtar", [
      "-czf",
      ".MTREE",
      "--format=mtree",
      "--options=!all,use-set,type,uid,gid,mode,time,size,md5,sha256,link",
      ".PKGINFO",
      "usr",
    ], { cwd: root });
    await Deno.utime(join(root, ".MTREE"), BUILD_DATE, BUILD_DATE);
    const tarPath = join(work, "package.tar");
    await run("bsdtar", ["-cf", tarPath, ".PKGINFO", ".MTREE", "usr"], { cwd: root });
    await run("zstd", ["-q", "-f", "-T0", "-o", path, tarPath]);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
  const stat = await Deno.stat(path);
  return {
    fileName,
    path,
    size: stat.size,
    sha256: await sha256File(path),
    name: spec.name,
    version: spec.version,
  };
}

function pkginfo(spec: PackageSpec, arch: string, size: number): string {
  const lines = [
    "# Generated by flexo's test helpers",
    `pkgname = ${spec.name}`,
    `pkgbase = ${spec.name}`,
    `pkgver = ${spec.version}`,
    `pkgdesc = Test package ${spec.name} for flexo`,
    "url = https://flexo.invalid/",
    `builddate = ${BUILD_DATE}`,
    "packager = Flexo Tests <tests@flexo.invalid>",
    `size = ${size}`,
    `arch = ${arch}`,
    "license = MIT",
    ...(spec.depends ?? []).map((dependency) => `depend = ${dependency}`),
  ];
  return lines.join("\n") + "\n";
}

/** FNV-1a over the text, never zero (xorshift needs a non-zero state). */
function seedOf(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash || 1;
}

/** Writes `size` deterministic pseudo-random bytes (xorshift32), which compression cannot shrink. */
async function writePayload(path: string, size: number, seed: number): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    let state = seed;
    const words = new Uint32Array(PAYLOAD_CHUNK / 4);
    const bytes = new Uint8Array(words.buffer);
    let remaining = size;
    while (remaining > 0) {
      for (let i = 0; i < words.length; i++) {
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        words[i] = state;
      }
      await writeAll(file, bytes.subarray(0, Math.min(remaining, bytes.length)));
      remaining -= Math.min(remaining, bytes.length);
    }
  } finally {
    file.close();
  }
}

/**
 * Hex SHA-256 of a file, read in chunks.
 *
 * @param path File to hash.
 */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path, { read: true });
  try {
    const buffer = new Uint8Array(1 << 16);
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    file.close();
  }
  return hash.digest("hex");
}

/**
 * Creates a throwaway ed25519 signing key without passphrase in `<dir>/gnupg`. Keep `dir` short (a temp
 * dir): gpg-agent's socket path must fit in 107 bytes.
 *
 * @param dir Directory that will hold the GNUPGHOME and the exported public key.
 */
export async function createGpgSigner(dir: string): Promise<GpgSigner> {
  await assertToolsAvailable(["gpg", "gpgconf"]);
  const gnupgHome = join(dir, "gnupg");
  await Deno.mkdir(gnupgHome, { recursive: true, mode: 0o700 });
  await Deno.chmod(gnupgHome, 0o700);
  const gpg = (args: string[], stdin?: string) =>
    run("gpg", ["--homedir", gnupgHome, "--batch", "--no-tty", ...args], { stdin });
  await gpg(
    ["--gen-key"],
    [
      "%no-protection",
      "Key-Type: eddsa",
      "Key-Curve: ed25519",
      "Key-Usage: sign",
      "Name-Real: Flexo Test Signer",
      "Name-Email: signer@flexo.invalid",
      "Expire-Date: 0",
      "%commit",
      "",
    ].join("\n"),
  );
  const listing = await gpg(["--with-colons", "--list-secret-keys"]);
  const fingerprint = listing.split("\n").find((line) => line.startsWith("fpr:"))?.split(":")[9];
  if (!fingerprint) throw new Error(`gpg made a key but listed no fingerprint in ${gnupgHome}: ${listing}`);
  const publicKeyPath = join(dir, "signer-public.asc");
  await gpg(["--armor", "--output", publicKeyPath, "--yes", "--export", fingerprint]);
  return {
    gnupgHome,
    fingerprint,
    publicKeyPath,
    async sign(file: string): Promise<string> {
      const signature = `${file}.sig`;
      await gpg([
        "--yes",
        "--detach-sign",
        "--no-armor",
        "--local-user",
        fingerprint,
        "--output",
        signature,
        file,
      ]);
      return signature;
    },
    async close(): Promise<void> {
      await stopGpgAgent(gnupgHome);
    },
  };
}

/**
 * Makes a pacman keyring directory (`GPGDir`) trust the signer: imports its public key and gives it
 * ultimate owner trust, which makes its signatures valid for pacman's `SigLevel = Required` just like a
 * locally signed key. Never touches /etc/pacman.d/gnupg.
 *
 * @param gpgDir The pacman root's GPGDir (created if missing).
 * @param signer The signer whose packages pacman must accept.
 */
export async function trustSigner(gpgDir: string, signer: GpgSigner): Promise<void> {
  await Deno.mkdir(gpgDir, { recursive: true, mode: 0o700 });
  await Deno.chmod(gpgDir, 0o700);
  // Like pacman-key --init: pacman looks for pubring.gpg and warns when it is missing.
  await Deno.writeFile(join(gpgDir, "pubring.gpg"), new Uint8Array(), { append: true });
  const gpg = (args: string[], stdin?: string) =>
    run("gpg", ["--homedir", gpgDir, "--batch", "--no-tty", ...args], { stdin });
  await gpg(["--import", signer.publicKeyPath]);
  await gpg(["--import-ownertrust"], `${signer.fingerprint}:6:\n`);
}

/**
 * Stops any gpg-agent or dirmngr started for a GNUPGHOME; a no-op when none runs.
 *
 * @param gnupgHome The home directory the daemons belong to.
 */
export async function stopGpgAgent(gnupgHome: string): Promise<void> {
  await new Deno.Command("gpgconf", {
    args: ["--homedir", gnupgHome, "--kill", "all"],
    stdout: "null",
    stderr: "null",
  })
    .output();
}
