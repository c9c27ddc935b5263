/**
 * removeOutdatedPackages(): a custom repository's package rebuilt under the same name goes from the cache when
 * the newer database lists another size; an official repository's never does (its file names are unique per
 * build, so such a database is broken or hostile, and the verified copy is kept).
 */

import { join } from "node:path";
import { assertEquals } from "../helpers/assert.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { CacheStore } from "../../src/cache/cache_store.ts";
import { removeOutdatedPackages } from "../../src/cache/outdated_packages.ts";
import type { PackageEntry } from "../../src/repo/repo_db_desc.ts";
import { sha256 } from "../helpers/bytes.ts";
import { concat } from "../../src/byte_reader.ts";
import { testApp } from "../helpers/test_app.ts";
import { tarEntry } from "../helpers/test_database.ts";

const NAME = "tool-1.0-1-x86_64.pkg.tar.zst";

function listing(size: number, signature?: Uint8Array): Map<string, PackageEntry> {
  const entry = {
    name: "tool",
    version: "1.0-1",
    fileName: NAME,
    compressedSize: size,
    sha256: "0".repeat(64),
    signatureSize: signature?.length,
    signatureSha256: signature && sha256(signature).slice(0, 32),
  };
  return new Map([[NAME, entry]]);
}

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

Deno.test("removeOutdatedPackages() removes a custom repository's rebuilt package, never an official one's", async () => {
  await withTempDir(async (root) => {
    const store = new CacheStore(root);
    const official = join(root, "core", "os", "x86_64");
    const custom = join(root, "custom_repo", "own", "own", "x86_64");
    for (const dir of [official, custom]) {
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeFile(join(dir, NAME), new Uint8Array(10));
      await Deno.writeFile(join(dir, `${NAME}.sig`), new Uint8Array(3));
    }
    // Both databases list the file with 20 bytes; the cached copies have 10.
    assertEquals(await removeOutdatedPackages(official, listing(20), store), []);
    assertEquals(await exists(join(official, NAME)), true, "an official repository's verified copy stays");
    const removed = await removeOutdatedPackages(custom, listing(20), store);
    assertEquals(removed, [{ path: join(custom, NAME), bytes: 10 }, {
      path: join(custom, `${NAME}.sig`),
      bytes: 3,
    }]);
    assertEquals(await exists(join(custom, NAME)), false);
    // The same size: nothing to do.
    await Deno.writeFile(join(custom, NAME), new Uint8Array(20));
    assertEquals(await removeOutdatedPackages(custom, listing(20), store), []);
  });
});

Deno.test("removeOutdatedPackages() removes a custom repository's cached .sig that differs from the database's %PGPSIG%, and keeps the right one", async () => {
  await withTempDir(async (root) => {
    const store = new CacheStore(root);
    const custom = join(root, "custom_repo", "own", "own", "x86_64");
    await Deno.mkdir(custom, { recursive: true });
    const signature = new Uint8Array(119).fill(5);
    const corrupt = signature.slice();
    corrupt[100] ^= 1;
    await Deno.writeFile(join(custom, NAME), new Uint8Array(20));
    await Deno.writeFile(join(custom, `${NAME}.sig`), signature);
    assertEquals(
      await removeOutdatedPackages(custom, listing(20, signature), store),
      [],
      "the right one stays",
    );
    assertEquals(await removeOutdatedPackages(custom, listing(20), store), [], "no %PGPSIG%: not checked");
    await Deno.writeFile(join(custom, `${NAME}.sig`), corrupt);
    assertEquals(await removeOutdatedPackages(custom, listing(20, signature), store), [
      { path: join(custom, `${NAME}.sig`), bytes: 119 },
    ]);
    assertEquals(await exists(join(custom, `${NAME}.sig`)), false);
    assertEquals(await exists(join(custom, NAME)), true, "the package it signs stays");
  });
});

/** A database of one package: `NAME` of `size` bytes with the SHA-256 `sha256`. */
function databaseListing(size: number, sha256: string): Uint8Array {
  const desc =
    `%FILENAME%\n${NAME}\n\n%NAME%\ntool\n\n%VERSION%\n1.0-1\n\n%CSIZE%\n${size}\n\n%SHA256SUM%\n${sha256}\n`;
  return concat([tarEntry("tool-1.0-1/desc", new TextEncoder().encode(desc)), new Uint8Array(1024)]);
}

Deno.test("createApp()'s package index removes a custom repository's package rebuilt with the same size once its database lists another SHA-256", async () => {
  const app = await testApp(["http://127.0.0.1:9/"], {
    config: { custom_repo: [{ name: "own", url: "http://127.0.0.1:9" }] },
  });
  try {
    const dir = join(app.dir, "custom_repo", "own", "own", "x86_64");
    await Deno.mkdir(dir, { recursive: true });
    const database = join(dir, "own.db");
    // The cached copy, verified against the database of its day.
    await Deno.writeFile(join(dir, NAME), new Uint8Array(20));
    await Deno.writeFile(join(dir, `${NAME}.sig`), new Uint8Array(3));
    await Deno.writeFile(database, databaseListing(20, "a".repeat(64)));
    await app.packageIndex.loadDatabase(app.dir, database);
    assertEquals(await exists(join(dir, NAME)), true, "the database vouches for it");
    // The owner builds tool 1.0-1 again: same name, same size, other bytes.
    await Deno.writeFile(database, databaseListing(20, "b".repeat(64)));
    await app.packageIndex.loadDatabase(app.dir, database);
    assertEquals(await exists(join(dir, NAME)), false, "the old build would fail pacman's checksum");
    assertEquals(await exists(join(dir, `${NAME}.sig`)), false);
  } finally {
    await app.cleanup();
  }
});
