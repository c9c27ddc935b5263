/**
 * Parse pacman package file names: `name-[epoch:]pkgver-pkgrel-arch.pkg.tar[.ext]`, and their `.sig` files.
 *
 * The name may itself contain dashes, so the name is what remains after splitting the architecture, the
 * release and the version off the right. Names are taken as they are on disk: a URL-encoded epoch colon
 * (`%3A`) must be decoded by the caller.
 *
 * @module
 */

/** The parts of a package file name. */
export interface PackageFileName {
  /** Package name, e.g. `python-requests`. */
  name: string;
  /** Full version `[epoch:]pkgver-pkgrel`, as pacman's vercmp takes it. */
  version: string;
  /** The epoch digits, or undefined when the file name has none. */
  epoch: string | undefined;
  /** Upstream version, e.g. `2.31.0`. */
  pkgver: string;
  /** Package release, e.g. `1` or `2.1`. */
  pkgrel: string;
  /** Architecture, e.g. `x86_64` or `any`. */
  arch: string;
  /** Everything from `.pkg.tar` on, e.g. `.pkg.tar.zst`. */
  extension: string;
}

/** The suffix of detached package signatures. */
export const SIGNATURE_SUFFIX = ".sig";

const EXTENSION_PATTERN = /\.pkg\.tar(\.[A-Za-z0-9]+)?$/;
const NAME_PATTERN = /^[A-Za-z0-9@_+][A-Za-z0-9@._+-]*$/;
const PKGVER_PATTERN = /^[^\-:/\s]+$/;
const PKGREL_PATTERN = /^[0-9]+(\.[0-9]+)*$/;
const ARCH_PATTERN = /^[A-Za-z0-9_]+$/;
const EPOCH_PATTERN = /^[0-9]+$/;

/**
 * Split a package file name into its parts.
 *
 * @param fileName A bare file name (no directory), e.g. `lib32-glibc-2.39-1-x86_64.pkg.tar.zst`.
 * @returns The parts, or undefined when the name is not a package file name (signatures included).
 */
export function parsePackageFileName(fileName: string): PackageFileName | undefined {
  const extensionMatch = EXTENSION_PATTERN.exec(fileName);
  if (!extensionMatch) return undefined;
  const extension = extensionMatch[0];
  const parts = fileName.slice(0, extensionMatch.index).split("-");
  if (parts.length < 4) return undefined;
  const arch = parts.pop()!;
  const pkgrel = parts.pop()!;
  const fullPkgver = parts.pop()!;
  const name = parts.join("-");
  const colon = fullPkgver.indexOf(":");
  const epoch = colon === -1 ? undefined : fullPkgver.slice(0, colon);
  const pkgver = colon === -1 ? fullPkgver : fullPkgver.slice(colon + 1);
  if (
    !NAME_PATTERN.test(name) || !PKGVER_PATTERN.test(pkgver) || !PKGREL_PATTERN.test(pkgrel) ||
    !ARCH_PATTERN.test(arch) || (epoch !== undefined && !EPOCH_PATTERN.test(epoch))
  ) {
    return undefined;
  }
  const version = `${epoch === undefined ? "" : `${epoch}:`}${pkgver}-${pkgrel}`;
  return { name, version, epoch, pkgver, pkgrel, arch, extension };
}

/**
 * The file name of a package's detached signature.
 *
 * @param fileName A package file name, e.g. `zstd-1.5.6-1-x86_64.pkg.tar.zst`.
 * @returns `fileName` with `.sig` appended.
 */
export function signatureOf(fileName: string): string {
  return fileName + SIGNATURE_SUFFIX;
}

/**
 * Whether a file name is the detached signature of a package file.
 *
 * @param fileName A bare file name.
 * @returns True for `<package file name>.sig`, false for anything else (including a `.sig` of a non-package).
 */
export function isSignature(fileName: string): boolean {
  return signedFileOf(fileName) !== undefined;
}

/**
 * The package file that a signature file belongs to.
 *
 * @param fileName A bare file name such as `zstd-1.5.6-1-x86_64.pkg.tar.zst.sig`.
 * @returns The package file name, or undefined when `fileName` is not a package signature.
 */
export function signedFileOf(fileName: string): string | undefined {
  if (!fileName.endsWith(SIGNATURE_SUFFIX)) return undefined;
  const packageFileName = fileName.slice(0, -SIGNATURE_SUFFIX.length);
  return parsePackageFileName(packageFileName) ? packageFileName : undefined;
}
