/**
 * Checks a download against what the repository database says about the file: its size and SHA-256. The
 * bytes are hashed as they are written (and, for a resumed download, the part already on disk first), so a
 * corrupt file is caught before it is committed to the cache, and the mirrors that sent it can be named.
 *
 * @module
 */

import type { Hash } from "node:crypto";

/** What the repository database says the file is. */
export interface ExpectedFile {
  /** Size in bytes. */
  size: number;
  /**
   * Lower-case hex SHA-256, or its first 32 digits at least (a package signature's, which the package index
   * keeps shortened: `PackageEntry.signatureSha256`). The file's digest must begin with it.
   */
  sha256: string;
}

/** The fewest hex digits of a SHA-256 that {@linkcode ExpectedFile.sha256} may hold (16 bytes). */
export const MIN_EXPECTED_DIGITS = 32;

/**
 * Size and SHA-256 of one download, fed chunk by chunk and compared once at the end. Made by
 * {@linkcode IntegrityCheck.start}.
 */
export class IntegrityCheck {
  readonly #expect: ExpectedFile;
  readonly #hash: Hash;
  /** The digest, once taken by {@linkcode IntegrityCheck.mismatch}. */
  #digest?: string;
  readonly #contributors = new Set<string>();

  /**
   * Starts an empty check against `expect`, what the file must be. `node:crypto` is loaded here, by the first
   * download that is checked: loading it costs milliseconds of start-up (and about 0.2 MiB), which a proxy
   * that only serves its cache does not need (BENCHMARKS.md, "Session six: idle memory and start-up time").
   * The specifier is a literal, so `deno compile` still includes it.
   */
  static async start(expect: ExpectedFile): Promise<IntegrityCheck> {
    const { createHash } = await import("node:crypto");
    return new IntegrityCheck(expect, createHash("sha256"));
  }

  private constructor(expect: ExpectedFile, hash: Hash) {
    this.#expect = expect;
    this.#hash = hash;
  }

  /** The mirrors whose bytes went into the file, in the order they first sent some. */
  get contributors(): ReadonlySet<string> {
    return this.#contributors;
  }

  /** Feeds bytes that `mirror` sent. */
  update(chunk: Uint8Array, mirror: string): void {
    this.#hash.update(chunk);
    this.#contributors.add(mirror);
  }

  /**
   * Feeds the first `length` bytes of a file on disk: the part of a resumed download fetched earlier, from
   * `mirror` when its record names one (a contributor like any other: they may be the corrupt ones).
   *
   * @throws {Error} when the file is shorter than `length`.
   */
  async updateFromFile(path: string, length: number, mirror?: string): Promise<void> {
    if (mirror !== undefined) this.#contributors.add(mirror);
    const existing = await Deno.open(path, { read: true });
    let remaining = length;
    const buffer = new Uint8Array(256 * 1024);
    try {
      while (remaining > 0) {
        const read = await existing.read(buffer.subarray(0, Math.min(buffer.length, remaining)));
        if (read === null) throw new Error(`${path} is shorter than recorded`);
        this.#hash.update(buffer.subarray(0, read));
        remaining -= read;
      }
    } finally {
      existing.close();
    }
  }

  /**
   * Compares what was fed with what was expected, once every byte was fed (nothing may be fed after the first
   * call; later calls compare the same digest).
   *
   * @param written How many bytes the file has.
   * @param upstreamPath The file's path, for the message.
   * @returns Undefined when the file matches; otherwise why it does not, as a message for the log and client.
   */
  mismatch(written: number, upstreamPath: string): string | undefined {
    const expect = this.#expect;
    const sha256 = this.#digest ??= this.#hash.digest("hex");
    if (written === expect.size && digestMatches(sha256, expect.sha256)) return undefined;
    return `${upstreamPath} does not match the repository database ` +
      `(${written} bytes with SHA-256 ${sha256}, expected ${expect.size} bytes with ${expect.sha256}` +
      `${expect.sha256.length < sha256.length ? "..." : ""}); ` +
      "it was discarded, retry to fetch it from another mirror";
  }
}

/** Whether a file's SHA-256 (hex) matches an expected one, which may be its first digits (at least 32). */
export function digestMatches(sha256: string, expected: string): boolean {
  return expected.length >= MIN_EXPECTED_DIGITS && sha256.startsWith(expected);
}
