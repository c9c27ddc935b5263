import assert from "node:assert/strict";
import { join } from "node:path";
import {
  MAX_DATABASE_ENTRIES,
  type PackageEntry,
  readRepoDb,
  RepoDbError,
  UnsupportedDatabaseError,
} from "../../src/repo/repo_db.ts";
import { createGpgSigner, type DbExtension, makeRepo, type RepoInfo } from "../helpers/make_repo.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { randomBytes, sha256 } from "../helpers/bytes.ts";

const PACKAGES = [
  { name: "zstd", version: "1.5.6-1" },
  { name: "lib32-xcb-util-cursor", version: "0.1.5-2" },
  { name: "vim", version: "2:9.1.0-1", size: 70_000 },
  { name: "python-foo+bar", version: "1.0rc1.r12.g1234-1.1" },
];

/** Fails with an install hint when a compression tool the test needs is missing. */
async function requireTool(tool: string, debianPackage: string): Promise<void> {
  const found = await new Deno.Command("bash", { args: ["-c", `command -v ${tool}`], stdout: "null" })
    .output();
  if (!found.success) {
    throw new Error(`${tool} is missing; install it with: apt-get install -y ${debianPackage}`);
  }
}

async function run(program: string, args: string[], cwd?: string): Promise<void> {
  const output = await new Deno.Command(program, { args, cwd, stdout: "null", stderr: "piped" }).output();
  if (!output.success) {
    throw new Error(`${program} ${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
}

function streamOf(bytes: Uint8Array, chunkSize = 64 * 1024): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) {
        controller.close();
        return;
      }
      controller.enqueue(bytes.slice(offset, offset + chunkSize));
      offset += chunkSize;
    },
  });
}

async function readFile(path: string): Promise<Map<string, PackageEntry>> {
  const file = await Deno.open(path);
  return await readRepoDb(file.readable);
}

function expectedEntries(repo: RepoInfo): PackageEntry[] {
  return repo.packages
    .map((pkg) => ({
      name: pkg.name,
      version: pkg.version,
      fileName: pkg.fileName,
      compressedSize: pkg.size,
      sha256: pkg.sha256,
      signatureSize: undefined,
      signatureSha256: undefined,
    }))
    .sort((a, b) => a.fileName.localeCompare(b.fileName));
}

function sortedValues(entries: Map<string, PackageEntry>): PackageEntry[] {
  for (const [key, entry] of entries) assert.equal(key, entry.fileName);
  return [...entries.values()].sort((a, b) => a.fileName.localeCompare(b.fileName));
}

async function assertRejects(input: Uint8Array | ReadableStream<Uint8Array>, pattern: RegExp): Promise<void> {
  const stream = input instanceof Uint8Array ? streamOf(input, 4096) : input;
  await assert.rejects(readRepoDb(stream), (error: unknown) => {
    assert.ok(error instanceof RepoDbError, `expected a RepoDbError, got ${error}`);
    assert.match(error.message, pattern);
    return true;
  });
}

for (const extension of ["tar.gz", "tar.zst", "tar.xz"] as DbExtension[]) {
  Deno.test(`readRepoDb() reads sizes and SHA-256 from a repo-add database (${extension})`, async () => {
    if (extension === "tar.xz") await requireTool("xz", "xz-utils");
    await withTempDir(async (dir) => {
      const repo = await makeRepo(dir, { repo: "core", packages: PACKAGES, dbExtension: extension });
      const expected = expectedEntries(repo);
      assert.equal(expected.length, PACKAGES.length);
      assert.deepEqual(sortedValues(await readFile(join(repo.osDir, "core.db"))), expected);
      // The .files database holds the same desc entries next to the file lists.
      assert.deepEqual(sortedValues(await readFile(join(repo.osDir, "core.files"))), expected);
      // Chunk boundaries anywhere, even inside magic bytes and tar headers.
      const bytes = await Deno.readFile(join(repo.osDir, "core.db"));
      assert.deepEqual(sortedValues(await readRepoDb(streamOf(bytes, 7))), expected);
      assert.deepEqual(sortedValues(await readRepoDb(streamOf(bytes, 1))), expected);

      // Corrupt and truncated copies are rejected, not read partially.
      await assertRejects(bytes.subarray(0, bytes.length - 9), /corrupt or truncated|ends/);
      await assertRejects(bytes.subarray(0, Math.floor(bytes.length / 2)), /corrupt or truncated|ends/);
      const flipped = bytes.slice();
      flipped[Math.floor(bytes.length / 2)] ^= 0x55;
      await assertRejects(flipped, /corrupt|truncated|checksum|not a tar/);
    });
  });
}

Deno.test("readRepoDb() reads an uncompressed database and rejects a damaged one", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(dir, { repo: "extra", packages: PACKAGES });
    const gzipped = await Deno.readFile(join(repo.osDir, "extra.db"));
    const tar = new Uint8Array(
      await new Response(new Blob([gzipped]).stream().pipeThrough(new DecompressionStream("gzip")))
        .arrayBuffer(),
    );
    assert.equal(new TextDecoder().decode(tar.subarray(257, 262)), "ustar");
    assert.deepEqual(sortedValues(await readRepoDb(streamOf(tar, 100))), expectedEntries(repo));

    await assertRejects(tar.subarray(0, 512 + 100), /middle of an entry/);
    await assertRejects(
      tar.subarray(0, tar.findLastIndex((byte) => byte !== 0) + 1 + 400),
      /middle of an entry|end-of-archive/,
    );
    const badHeader = tar.slice();
    badHeader[512 + 10] ^= 0x01; // inside the name in the second header (the first desc)
    await assertRejects(badHeader, /header #\d+ has a bad checksum/);
  });
});

Deno.test("readRepoDb() streams a large database with long names through every compression", async () => {
  await requireTool("xz", "xz-utils");
  await withTempDir(async (dir) => {
    // 1500 entries with names longer than the 100 bytes of a plain tar header (bsdtar writes pax headers),
    // plus an incompressible file entry so that the compressed stream has raw blocks.
    const root = join(dir, "root");
    const expected: PackageEntry[] = [];
    for (let i = 0; i < 1500; i++) {
      const name = `package-${i}-${"long-name-".repeat(10)}`;
      const version = `${i % 3}:${i}.0.${i % 7}-${1 + (i % 4)}`;
      const entry: PackageEntry = {
        name,
        version,
        fileName: `${name}-${version}-x86_64.pkg.tar.zst`,
        compressedSize: 1000 + i,
        sha256: (i.toString(16).padStart(8, "0")).repeat(8),
        signatureSize: undefined,
        signatureSha256: undefined,
      };
      expected.push(entry);
      await Deno.mkdir(join(root, `${name}-${version}`), { recursive: true });
      await Deno.writeTextFile(
        join(root, `${name}-${version}`, "desc"),
        `%FILENAME%\n${entry.fileName}\n\n%NAME%\n${name}\n\n%VERSION%\n${version}\n\n%DESC%\nPackage ${i}\n\n` +
          `%CSIZE%\n${entry.compressedSize}\n\n%SHA256SUM%\n${entry.sha256.toUpperCase()}\n\n%ARCH%\nx86_64\n\n`,
      );
    }
    const noise = randomBytes(300_000);
    await Deno.mkdir(join(root, "zz-noise-1-1"));
    await Deno.writeFile(join(root, "zz-noise-1-1", "files"), noise);
    const tar = join(dir, "big.db.tar");
    await run("bsdtar", ["-cf", tar, "."], root);
    await run("gzip", ["-k", tar]);
    await run("zstd", ["-q", "-k", tar]);
    await run("xz", ["-k", tar]);
    await run("bash", ["-c", `zstd -q --no-check -c ${tar} > ${tar}.nocheck.zst`]);
    expected.sort((a, b) => a.fileName.localeCompare(b.fileName));
    for (const suffix of ["", ".gz", ".zst", ".xz", ".nocheck.zst"]) {
      assert.deepEqual(sortedValues(await readFile(tar + suffix)), expected, `big.db.tar${suffix}`);
    }

    // A zstd stream of several frames, led by a skippable frame, decompresses to their concatenation.
    const tarBytes = await Deno.readFile(tar);
    const half = Math.floor(tarBytes.length / 2);
    await Deno.writeFile(join(dir, "part1"), tarBytes.subarray(0, half));
    await Deno.writeFile(join(dir, "part2"), tarBytes.subarray(half));
    const skippable = [0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3];
    await Deno.writeFile(join(dir, "multi.zst"), new Uint8Array(skippable));
    await run("bash", ["-c", "zstd -q -c part1 >> multi.zst && zstd -q -c part2 >> multi.zst"], dir);
    assert.deepEqual(sortedValues(await readFile(join(dir, "multi.zst"))), expected, "multi-frame zstd");

    // A flipped byte in the incompressible part leaves zstd's block structure intact: only the content
    // checksum notices it.
    const zst = await Deno.readFile(`${tar}.zst`);
    const noiseAt = zst.length - 100_000;
    zst[noiseAt] ^= 0x01;
    await assertRejects(
      zst,
      /zstd data is corrupt or truncated \(zstd frame content checksum does not match\)/,
    );
    const xz = await Deno.readFile(`${tar}.xz`);
    xz[xz.length - 100_000] ^= 0x01;
    await assertRejects(xz, /xz data is corrupt or truncated \(corrupt xz data/);
    const gz = await Deno.readFile(`${tar}.gz`);
    gz[gz.length - 100_000] ^= 0x01;
    await assertRejects(gz, /gzip data is corrupt or truncated/);
  });
});

Deno.test("readRepoDb() rejects what is not a database, naming the problem", async () => {
  await assertRejects(new Uint8Array(0), /is empty/);
  await assertRejects(
    new TextEncoder().encode("<html>404 Not Found</html>"),
    /neither a tar archive nor gzip, zstd or xz/,
  );
  await assertRejects(
    new Uint8Array([0x42, 0x5a, 0x68, 0x39, 1, 2, 3]),
    /bzip2 compressed, which is not supported/,
  );
  const notTar = new Uint8Array(1024).fill(7);
  notTar.set(new TextEncoder().encode("ustar"), 257);
  await assertRejects(notTar, /not a tar archive/);
  // gzip data that is not a tar inside
  const gzipped = new Uint8Array(
    await new Response(
      new Blob([new Uint8Array(4096).fill(65)]).stream().pipeThrough(new CompressionStream("gzip")),
    )
      .arrayBuffer(),
  );
  await assertRejects(gzipped, /not a tar archive/);
  // a zstd frame header asking for a 2 TiB window is refused before anything is allocated
  await assertRejects(
    new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf8, 0x01, 0x00, 0x00]),
    /zstd data is corrupt or truncated \(zstd frame needs a window of more than 128 MiB/,
  );
  // an entry whose size or checksum is malformed is corruption, not an unknown package
  await assertRejects(
    await tarOf(
      "foo-1-1/desc",
      "%FILENAME%\nfoo-1-1-any.pkg.tar.zst\n\n%NAME%\nfoo\n\n%VERSION%\n1-1\n\n%CSIZE%\nabc\n\n%SHA256SUM%\nxyz\n",
    ),
    /entry for foo-1-1-any.pkg.tar.zst has a malformed size or SHA-256/,
  );
});

Deno.test("readRepoDb() leaves out entries that lack a field and skips other files", async () => {
  const entries = await readRepoDb(
    streamOf(
      await tarOf("foo-1-1/desc", "%FILENAME%\nfoo-1-1-any.pkg.tar.zst\n\n%NAME%\nfoo\n\n%VERSION%\n1-1\n\n"),
    ),
  );
  assert.equal(entries.size, 0);
});

Deno.test("readRepoDb() reports a failing source as a RepoDbError", async () => {
  let sent = false;
  const failing = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent) {
        sent = true;
        controller.enqueue(new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]));
        return;
      }
      controller.error(new Error("connection reset by mirror"));
    },
  });
  await assertRejects(failing, /Could not read the repository database: connection reset by mirror/);
});

Deno.test("readRepoDb() reads xz databases one after another, even after one failed midway", async () => {
  await requireTool("xz", "xz-utils");
  const good = await tarOf(
    "foo-1-1/desc",
    `%FILENAME%\nfoo-1-1-any.pkg.tar.zst\n\n%NAME%\nfoo\n\n%VERSION%\n1-1\n\n%CSIZE%\n5\n\n%SHA256SUM%\n${
      "ab".repeat(32)
    }\n`,
  );
  // The bad entry comes first and a megabyte follows, so that the decoder is still busy when reading fails.
  const bad = await tarOf(
    "foo-1-1/desc",
    "%FILENAME%\nfoo-1-1-any.pkg.tar.zst\n\n%NAME%\nfoo\n\n%VERSION%\n1-1\n\n%CSIZE%\n-5\n\n%SHA256SUM%\nab\n",
    { path: "zz-1-1/files", bytes: new Uint8Array(1 << 20).fill(120) },
  );
  const xz = async (bytes: Uint8Array) => {
    const child = new Deno.Command("xz", { args: ["-c"], stdin: "piped", stdout: "piped" }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(bytes);
    await writer.close();
    return (await child.output()).stdout;
  };
  // The xz decoder serves one stream at a time: a failed read must release it, or the next read would hang.
  await assertRejects(await xz(bad), /malformed size or SHA-256/);
  const [first, second] = await Promise.all([
    readRepoDb(streamOf(await xz(good))),
    readRepoDb(streamOf(await xz(good))),
  ]);
  assert.deepEqual([...first.keys()], ["foo-1-1-any.pkg.tar.zst"]);
  assert.deepEqual(second, first);
  assert.equal(first.get("foo-1-1-any.pkg.tar.zst")?.compressedSize, 5);
});

/** An uncompressed tar made by bsdtar of one text entry and, optionally, a larger binary one after it. */
async function tarOf(
  path: string,
  text: string,
  extra?: { path: string; bytes: Uint8Array },
): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir({ prefix: "flexo-repo-db-tar-" });
  try {
    const paths = [path];
    await Deno.mkdir(join(dir, "root", path, ".."), { recursive: true });
    await Deno.writeTextFile(join(dir, "root", path), text);
    if (extra) {
      await Deno.mkdir(join(dir, "root", extra.path, ".."), { recursive: true });
      await Deno.writeFile(join(dir, "root", extra.path), extra.bytes);
      paths.push(extra.path);
    }
    await run("bsdtar", ["-cf", join(dir, "out.tar"), ...paths], join(dir, "root"));
    return await Deno.readFile(join(dir, "out.tar"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("readRepoDb() throws UnsupportedDatabaseError for every compression repo-add writes that it cannot read", async () => {
  const heads: [string, number[]][] = [
    ["bzip2", [0x42, 0x5a, 0x68, 0x39]],
    ["lz4", [0x04, 0x22, 0x4d, 0x18]],
    ["lzip", [0x4c, 0x5a, 0x49, 0x50]],
    ["lrzip", [0x4c, 0x52, 0x5a, 0x49]],
    ["lzop", [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a]],
    ["compress", [0x1f, 0x9d]],
  ];
  for (const [format, head] of heads) {
    await assert.rejects(readRepoDb(streamOf(new Uint8Array([...head, 1, 2, 3]))), (error: unknown) => {
      assert.ok(error instanceof UnsupportedDatabaseError, `${format}: ${error}`);
      assert.match(error.message, new RegExp(`is ${format} compressed, which is not supported`));
      return true;
    });
  }
});

Deno.test("readRepoDb() holds no more than maxEntries packages, and says so only of an intact database", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(dir, { repo: "core", packages: PACKAGES }); // four packages
    const bytes = await Deno.readFile(join(repo.osDir, "core.db.tar.gz"));
    assert.equal((await readRepoDb(streamOf(bytes), { maxEntries: 4 })).size, 4);
    // A database listing more packages than anything real (a broken or hostile mirror) would fill the memory.
    await assert.rejects(readRepoDb(streamOf(bytes), { maxEntries: 3 }), (error: unknown) => {
      assert.ok(error instanceof UnsupportedDatabaseError, String(error));
      assert.match(error.message, /lists more than 3 packages/);
      return true;
    });
    // Past the limit the rest is still checked: a truncated one is corrupt, not merely too big.
    await assert.rejects(
      readRepoDb(streamOf(bytes.subarray(0, bytes.length - 10)), { maxEntries: 1 }),
      (error: unknown) => error instanceof RepoDbError && !(error instanceof UnsupportedDatabaseError),
    );
    assert.ok(
      MAX_DATABASE_ENTRIES >= 50_000 && MAX_DATABASE_ENTRIES <= 200_000,
      "a bound, above real repositories",
    );
  });
});

Deno.test("readRepoDb() reads each signature's size and the first 16 bytes of its SHA-256 from %PGPSIG% of a signed repository", async () => {
  await withTempDir(async (dir) => {
    const signer = await createGpgSigner(dir);
    try {
      const repo = await makeRepo(join(dir, "mirror"), {
        repo: "signed",
        packages: PACKAGES.slice(0, 2),
        sign: signer,
        embedSignatures: true,
      });
      const entries = await readFile(join(repo.osDir, "signed.db"));
      for (const pkg of repo.packages) {
        const signature = await Deno.readFile(pkg.signaturePath!);
        const entry = entries.get(pkg.fileName);
        assert.equal(entry?.signatureSize, signature.length, pkg.fileName);
        assert.equal(entry?.signatureSha256, sha256(signature).slice(0, 32), pkg.fileName);
      }
    } finally {
      await signer.close();
    }
  });
});
