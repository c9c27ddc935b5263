/**
 * Tests of the test helpers themselves, without the proxy: the repository builder, the fake mirror with
 * its faults, and the real pacman client running against the fake mirror.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  addPackages,
  assertToolsAvailable,
  createGpgSigner,
  makeRepo,
  type RepoInfo,
  sha256File,
} from "./helpers/make_repo.ts";
import { type FakeMirror, startFakeMirror } from "./helpers/fake_mirror.ts";
import { makePacmanRoot, type PacmanRootOptions, runPacman } from "./helpers/pacman.ts";
import { withTempDir } from "./helpers/temp_dir.ts";
import { concat } from "../src/byte_reader.ts";

const TOOLS = ["pacman", "repo-add", "bsdtar", "zstd", "gpg", "gpgconf"];
const SERVER = "$repo/os/$arch";

async function readBsdtarMember(packagePath: string, member: string): Promise<Uint8Array> {
  const output = await new Deno.Command("bsdtar", { args: ["-xOf", packagePath, member], stdout: "piped" })
    .output();
  assert.ok(output.success, `bsdtar could not read ${member} from ${packagePath}`);
  return output.stdout;
}

function packageOf(repo: RepoInfo, name: string) {
  const found = repo.packages.find((pkg) => pkg.name === name);
  assert.ok(found, `package ${name} is not in the repository`);
  return found;
}

function assertPacmanOk(result: { code: number; stdout: string; stderr: string }): void {
  assert.equal(result.code, 0, `pacman failed:\n${result.stdout}\n${result.stderr}`);
}

const THREE_PACKAGES = [
  { name: "small", version: "1.0-1", size: 1000, depends: ["dep"] },
  { name: "big", version: "1:2.0-1", size: 1_500_000 },
  { name: "dep", version: "0.5-2", size: 20_000 },
];

Deno.test("assertToolsAvailable() names the Debian package of a missing tool", async () => {
  await withTempDir(async (emptyDir) => {
    await assert.rejects(
      assertToolsAvailable(["bsdtar", "repo-add"], { searchPath: emptyDir }),
      /libarchive-tools pacman-package-manager/,
    );
    await assert.rejects(
      assertToolsAvailable(["gpg"], { searchPath: emptyDir }),
      /gpg not found on PATH.*apt-get install.* gnupg/,
    );
  });
  // The tools the end-to-end tests need: this fails with the apt-get command when one is missing.
  await assertToolsAvailable(TOOLS);
});

Deno.test("makeRepo() builds packages with .PKGINFO, .MTREE and a deterministic payload of the given size", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(join(dir, "a"), { repo: "flexotest", packages: THREE_PACKAGES });
    const again = await makeRepo(join(dir, "b"), {
      repo: "flexotest",
      packages: [THREE_PACKAGES[1]],
      dbExtension: "tar.zst",
    });
    assert.ok((await Deno.stat(join(again.osDir, "flexotest.db.tar.zst"))).isFile);
    assert.equal(repo.osDir, join(dir, "a", "flexotest", "os", "x86_64"));
    for (const name of ["flexotest.db", "flexotest.db.tar.gz", "flexotest.files", "flexotest.files.tar.gz"]) {
      assert.ok((await Deno.stat(join(repo.osDir, name))).isFile, `${name} is missing`);
    }
    const big = packageOf(repo, "big");
    assert.equal(big.fileName, "big-1:2.0-1-x86_64.pkg.tar.zst");
    assert.equal(big.path, join(repo.osDir, big.fileName));
    assert.equal(big.sha256, await sha256File(big.path));
    assert.ok(big.size > 1_500_000, "random payload must not compress");
    const info = new TextDecoder().decode(await readBsdtarMember(big.path, ".PKGINFO"));
    for (
      const line of ["pkgname = big", "pkgbase = big", "pkgver = 1:2.0-1", "size = 1500000", "arch = x86_64"]
    ) {
      assert.ok(info.includes(`${line}\n`), `.PKGINFO lacks "${line}":\n${info}`);
    }
    assert.match(
      new TextDecoder().decode(await readBsdtarMember(packageOf(repo, "small").path, ".PKGINFO")),
      /depend = dep\n/,
    );
    assert.ok((await readBsdtarMember(big.path, ".MTREE")).length > 0);
    const payload = await readBsdtarMember(big.path, "usr/share/flexo-test/big/payload.bin");
    assert.equal(payload.length, 1_500_000);
    const samePayload = await readBsdtarMember(
      packageOf(again, "big").path,
      "usr/share/flexo-test/big/payload.bin",
    );
    assert.deepEqual(samePayload, payload);
    const db = new TextDecoder().decode(
      await readBsdtarMember(join(repo.osDir, "flexotest.db.tar.gz"), "big-1:2.0-1/desc"),
    );
    assert.match(db, new RegExp(`%SHA256SUM%\n${big.sha256}\n`));
  });
});

Deno.test("pacman -Syw with SigLevel Never downloads every package from the fake mirror, and sees db updates", async () => {
  await withTempDir(async (dir) => {
    let repo = await makeRepo(dir, { repo: "flexotest", packages: THREE_PACKAGES });
    await using mirror = await startFakeMirror(dir);
    await using root = await makePacmanRoot({ serverUrl: mirror.url + SERVER, repos: ["flexotest"] });

    assertPacmanOk(await runPacman(root, ["-Syw", "small", "big"]));
    for (const pkg of repo.packages) {
      assert.equal(
        await sha256File(join(root.cacheDir, pkg.fileName)),
        pkg.sha256,
        `${pkg.fileName} differs`,
      );
      assert.equal(mirror.countRequests(`/flexotest/os/x86_64/${pkg.fileName}`, { method: "GET" }), 1);
    }
    assert.equal(mirror.countRequests("/flexotest.db.sig"), 0, "SigLevel Never must not ask for signatures");

    // An unchanged database: pacman asks with If-Modified-Since and the mirror answers 304.
    const dbRequests = mirror.countRequests("/flexotest.db");
    assertPacmanOk(await runPacman(root, ["-Sy"]));
    assert.equal(mirror.countRequests("/flexotest.db"), dbRequests + 1);
    assert.ok(mirror.requests.at(-1)?.headers["if-modified-since"], "pacman should revalidate its database");
    const before = (await Deno.stat(join(root.dbPath, "sync", "flexotest.db"))).mtime!.getTime();

    // The database changes upstream: the next -Sy downloads it and pacman sees the new packages.
    repo = await addPackages(repo, [{ name: "small", version: "1.1-1", size: 500 }, {
      name: "newpkg",
      version: "3-1",
    }]);
    assert.deepEqual(repo.packages.map((pkg) => `${pkg.name}-${pkg.version}`), [
      "big-1:2.0-1",
      "dep-0.5-2",
      "small-1.1-1",
      "newpkg-3-1",
    ]);
    assertPacmanOk(await runPacman(root, ["-Syw", "newpkg", "small"]));
    const after = (await Deno.stat(join(root.dbPath, "sync", "flexotest.db"))).mtime!.getTime();
    assert.ok(after > before, "the new database must be newer than the old one");
    for (const name of ["newpkg", "small"]) {
      const pkg = packageOf(repo, name);
      assert.equal(await sha256File(join(root.cacheDir, pkg.fileName)), pkg.sha256);
    }
  });
});

Deno.test("pacman resumes a .part file in its cache with a Range request to the fake mirror", async () => {
  await withTempDir(async (dir) => {
    const repo = await makeRepo(dir, { repo: "flexotest", packages: [THREE_PACKAGES[1]] });
    const big = packageOf(repo, "big");
    await using mirror = await startFakeMirror(dir);
    await using root = await makePacmanRoot({ serverUrl: mirror.url + SERVER, repos: ["flexotest"] });
    const half = (await Deno.readFile(big.path)).subarray(0, 700_000);
    await Deno.writeFile(join(root.cacheDir, `${big.fileName}.part`), half);

    assertPacmanOk(await runPacman(root, ["-Syw", "big"]));
    assert.equal(await sha256File(join(root.cacheDir, big.fileName)), big.sha256);
    const request = mirror.requests.find((r) => r.path.endsWith(big.fileName));
    assert.equal(request?.range, "bytes=700000-");
  });
});

Deno.test("pacman -Syw with signatures Required downloads and checks every .sig file", async () => {
  await withTempDir(async (dir) => {
    const signer = await createGpgSigner(dir);
    try {
      const repo = await makeRepo(join(dir, "mirror"), {
        repo: "flexotest",
        packages: THREE_PACKAGES,
        sign: signer,
      });
      await using mirror = await startFakeMirror(repo.dir);
      const options: PacmanRootOptions = {
        serverUrl: mirror.url + SERVER,
        repos: ["flexotest"],
        sigLevel: "Required",
        signer,
      };
      {
        await using root = await makePacmanRoot(options);
        assertPacmanOk(await runPacman(root, ["-Syw", "small", "big"]));
        for (const pkg of repo.packages) {
          assert.equal(await sha256File(join(root.cacheDir, pkg.fileName)), pkg.sha256);
          assert.equal(
            await sha256File(join(root.cacheDir, `${pkg.fileName}.sig`)),
            await sha256File(pkg.signaturePath!),
          );
          assert.equal(mirror.countRequests(`${pkg.fileName}.sig`), 1);
        }
      }
      // Without the .sig files pacman must refuse: proof that signatures are really required.
      mirror.faults = { match: ".sig", status: 404 };
      await using strictRoot = await makePacmanRoot(options);
      const refused = await runPacman(strictRoot, ["-Syw", "dep"]);
      assert.notEqual(refused.code, 0, `pacman accepted a package without signature:\n${refused.stdout}`);
    } finally {
      await signer.close();
    }
  });
});

async function withMirror(
  fn: (mirror: FakeMirror, file: Uint8Array, client: Deno.HttpClient) => Promise<void>,
) {
  await withTempDir(async (dir) => {
    const file = new Uint8Array(256 * 1024).map((_, i) => (i * 7919 + (i >> 8)) & 0xff);
    await Deno.mkdir(join(dir, "pool"));
    await Deno.writeFile(join(dir, "pool", "data.bin"), file);
    const client = Deno.createHttpClient({});
    const mirror = await startFakeMirror(dir);
    try {
      await fn(mirror, file, client);
    } finally {
      client.close();
      await mirror.close();
    }
  });
}

/** Reads a body until it ends or fails, telling `onBytes` each new total; returns the bytes and the error. */
async function readBody(
  response: Response,
  onBytes: (total: number) => void = () => {},
): Promise<{ bytes: Uint8Array; error?: unknown }> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for await (const chunk of response.body!) {
      chunks.push(chunk);
      onBytes(total += chunk.byteLength);
    }
    return { bytes: concat(chunks) };
  } catch (error) {
    return { bytes: concat(chunks), error };
  }
}

Deno.test("startFakeMirror() serves files with HEAD, Range, If-Modified-Since and 404, and records requests", async () => {
  await withMirror(async (mirror, file, client) => {
    const url = mirror.url + "pool/data.bin";
    assert.ok(mirror.url.endsWith("/"));
    const full = await fetch(url, { client });
    assert.equal(full.status, 200);
    assert.equal(full.headers.get("content-length"), String(file.length));
    assert.equal(full.headers.get("accept-ranges"), "bytes");
    assert.deepEqual(new Uint8Array(await full.arrayBuffer()), file);
    const lastModified = full.headers.get("last-modified")!;
    assert.ok(!Number.isNaN(Date.parse(lastModified)));

    const head = await fetch(url, { method: "HEAD", client });
    assert.equal(head.headers.get("content-length"), String(file.length));
    assert.equal((await head.arrayBuffer()).byteLength, 0);

    const cases: [string, number, string | null, Uint8Array][] = [
      ["bytes=10-19", 206, `bytes 10-19/${file.length}`, file.subarray(10, 20)],
      ["bytes=262000-", 206, `bytes 262000-${file.length - 1}/${file.length}`, file.subarray(262000)],
      [
        "bytes=-5",
        206,
        `bytes ${file.length - 5}-${file.length - 1}/${file.length}`,
        file.subarray(file.length - 5),
      ],
      ["bytes=999999-", 416, `bytes */${file.length}`, new Uint8Array()],
    ];
    for (const [range, status, contentRange, expected] of cases) {
      const response = await fetch(url, { headers: { range }, client });
      assert.equal(response.status, status, range);
      assert.equal(response.headers.get("content-range"), contentRange, range);
      assert.deepEqual(new Uint8Array(await response.arrayBuffer()), expected, range);
    }
    const notModified = await fetch(url, { headers: { "if-modified-since": lastModified }, client });
    assert.equal(notModified.status, 304);
    await notModified.body?.cancel();
    const older = new Date(Date.parse(lastModified) - 60_000).toUTCString();
    const modified = await fetch(url, { headers: { "if-modified-since": older }, client });
    assert.equal(modified.status, 200);
    await modified.body?.cancel();

    for (const path of ["pool/missing.bin", "pool", "pool/%2e%2e/%2e%2e/etc/passwd"]) {
      const response = await fetch(mirror.url + path, { client });
      assert.ok(response.status === 404 || response.status === 400, `${path} answered ${response.status}`);
      await response.body?.cancel();
    }
    assert.equal(mirror.countRequests("/pool/data.bin"), 8);
    assert.equal(mirror.countRequests("/pool/data.bin", { method: "HEAD" }), 1);
    assert.deepEqual(
      mirror.requests.filter((r) => r.range).map((r) => r.range),
      cases.map(([range]) => range),
    );
    assert.ok(mirror.connections >= 1);
    mirror.clearRequests();
    assert.equal(mirror.requests.length, 0);
  });
});

Deno.test("fake mirror faults: delayMs, bytesPerSecond and corruptBytes", async () => {
  await withMirror(async (mirror, file, client) => {
    const url = mirror.url + "pool/data.bin";
    mirror.faults = { delayMs: 300 };
    let started = Date.now();
    const delayed = await fetch(url, { client });
    assert.ok(Date.now() - started >= 280, "headers came before the delay");
    await delayed.arrayBuffer();

    mirror.faults = { bytesPerSecond: 512 * 1024 };
    started = Date.now();
    const throttled = await fetch(url, { client });
    assert.deepEqual(new Uint8Array(await throttled.arrayBuffer()), file);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 400 && elapsed < 3000, `256 KiB at 512 KiB/s took ${elapsed} ms`);

    mirror.faults = { corruptBytes: 3 };
    const corrupted = new Uint8Array(await (await fetch(url, { client })).arrayBuffer());
    assert.equal(corrupted.length, file.length);
    assert.equal(corrupted.filter((byte, i) => byte !== file[i]).length, 3);
  });
});

Deno.test("fake mirror faults: stallAfterBytes hangs until the client aborts, dropAfterBytes truncates the body", async () => {
  await withMirror(async (mirror, file, client) => {
    const url = mirror.url + "pool/data.bin";
    mirror.faults = { stallAfterBytes: 1000 };
    const controller = new AbortController();
    const stalled = await fetch(url, { client, signal: controller.signal });
    assert.equal(stalled.headers.get("content-length"), String(file.length));
    // The client gives up once it has the bytes before the stall: the body must still be open then.
    const givingUp = new Error("the client gave up");
    const stalledBody = await readBody(stalled, (total) => total >= 1000 && controller.abort(givingUp));
    assert.equal(stalledBody.error, givingUp, "the body neither ended nor failed before the client gave up");
    assert.deepEqual(stalledBody.bytes, file.subarray(0, 1000));

    mirror.faults = { dropAfterBytes: 70_000 };
    const dropped = await fetch(url, { client });
    assert.equal(dropped.status, 200);
    assert.equal(dropped.headers.get("content-length"), String(file.length));
    const droppedBody = await readBody(dropped);
    assert.ok(droppedBody.error, "a truncated body must make the client fail");
    assert.deepEqual(droppedBody.bytes, file.subarray(0, 70_000));
  });
});

Deno.test("fake mirror faults: ignoreRange, omitContentLength, htmlErrorPage, status with match and times", async () => {
  await withMirror(async (mirror, file, client) => {
    const url = mirror.url + "pool/data.bin";
    mirror.faults = { ignoreRange: true };
    const whole = await fetch(url, { headers: { range: "bytes=100-" }, client });
    assert.equal(whole.status, 200);
    assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), file);

    mirror.faults = { omitContentLength: true };
    const unsized = await fetch(url, { client });
    assert.equal(unsized.headers.get("content-length"), null);
    assert.deepEqual(new Uint8Array(await unsized.arrayBuffer()), file);

    mirror.faults = { htmlErrorPage: true };
    const html = await fetch(url, { client });
    assert.equal(html.status, 200);
    assert.match(html.headers.get("content-type")!, /^text\/html/);
    assert.match(await html.text(), /<html>/);

    mirror.faults = [{ match: /\.bin$/, status: 500, times: 1 }, { match: "other.bin", status: 404 }];
    const statuses = [];
    for (const path of ["pool/data.bin", "pool/data.bin", "pool/other.bin"]) {
      const response = await fetch(mirror.url + path, { client });
      statuses.push(response.status);
      await response.body?.cancel();
    }
    assert.deepEqual(statuses, [500, 200, 404]);
  });
});

Deno.test("fake mirror faults: redirectTo answers 302 to the same path on another mirror", async () => {
  await withMirror(async (mirror, file, client) => {
    await using target = await startFakeMirror(mirror.rootDir);
    mirror.faults = { match: ".bin", redirectTo: target.url };
    const manual = await fetch(mirror.url + "pool/data.bin?x=1", { client, redirect: "manual" });
    assert.equal(manual.status, 302);
    assert.equal(manual.headers.get("location"), target.url + "pool/data.bin?x=1");
    await manual.body?.cancel();
    const followed = await fetch(mirror.url + "pool/data.bin", { client });
    assert.deepEqual(new Uint8Array(await followed.arrayBuffer()), file);
    assert.equal(mirror.countRequests("data.bin"), 2);
    assert.equal(target.countRequests("data.bin"), 1);
  });
});

Deno.test("fake mirror: headers adds response headers, onRequest sees each request before the answer", async () => {
  await withMirror(async (mirror, _file, client) => {
    const seen: string[] = [];
    mirror.onRequest = (request) => seen.push(`${request.method} ${request.path} ${mirror.requests.length}`);
    mirror.faults = { headers: { server: "cloudflare", "x-extra": "1" } };
    const response = await fetch(mirror.url + "pool/data.bin", { method: "HEAD", client });
    assert.equal(response.headers.get("server"), "cloudflare");
    assert.equal(response.headers.get("x-extra"), "1");
    assert.deepEqual(seen, ["HEAD /pool/data.bin 1"]);
  });
});

Deno.test("FakeMirror.close() ends stalled connections promptly", async () => {
  await withMirror(async (mirror, file, client) => {
    mirror.faults = { stallAfterBytes: 10 };
    const response = await fetch(mirror.url + "pool/data.bin", { client });
    const stalledNow = Promise.withResolvers<void>();
    const reading = readBody(response, (total) => total >= 10 && stalledNow.resolve());
    await stalledNow.promise;
    const started = Date.now();
    await mirror.close();
    assert.ok(Date.now() - started < 1000, "close() waited for the stalled client");
    const body = await reading;
    assert.ok(body.error, "the client must see the connection end");
    assert.deepEqual(body.bytes, file.subarray(0, 10));
  });
});
