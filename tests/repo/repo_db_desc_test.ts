import assert from "node:assert/strict";
import { isDescPath, parseDesc, RepoDbError } from "../../src/repo/repo_db_desc.ts";
import { sha256 } from "../helpers/bytes.ts";

const SHA = "AB".repeat(32);
const DESC = `%FILENAME%\nvim-2:9.1.0-1-x86_64.pkg.tar.zst\n\n%NAME%\nvim\n\n%VERSION%\n2:9.1.0-1\n\n` +
  `%DESC%\nVi Improved\n\n%CSIZE%\n70000\n\n%ISIZE%\n123456\n\n%SHA256SUM%\n${SHA}\n\n%ARCH%\nx86_64\n`;

Deno.test("parseDesc() reads name, version, file name, size and a lower-case SHA-256", () => {
  assert.deepEqual(parseDesc(DESC), {
    name: "vim",
    version: "2:9.1.0-1",
    fileName: "vim-2:9.1.0-1-x86_64.pkg.tar.zst",
    compressedSize: 70000,
    sha256: "ab".repeat(32),
    signatureSize: undefined,
    signatureSha256: undefined,
  });
});

Deno.test("parseDesc() keeps the size and the first 16 bytes of the SHA-256 of the signature in %PGPSIG%, not the signature", () => {
  const signature = crypto.getRandomValues(new Uint8Array(566));
  const entry = parseDesc(`${DESC}\n%PGPSIG%\n${signature.toBase64()}\n`);
  assert.equal(entry?.signatureSize, 566);
  assert.equal(entry?.signatureSha256, sha256(signature).slice(0, 32));
  for (const bad of ["", "not base64!"]) {
    const without = parseDesc(`${DESC}\n%PGPSIG%\n${bad}\n`);
    assert.equal(without?.signatureSha256, undefined, JSON.stringify(bad));
    assert.equal(without?.sha256, "ab".repeat(32), "the package is still verified");
  }
});

Deno.test("parseDesc() leaves out an entry that lacks a needed field", () => {
  for (const field of ["FILENAME", "NAME", "VERSION", "CSIZE", "SHA256SUM"]) {
    const without = DESC.replace(new RegExp(`%${field}%\\n[^\\n]*\\n`), "");
    assert.notEqual(without, DESC, field);
    assert.equal(parseDesc(without), undefined, `without %${field}%`);
  }
});

Deno.test("parseDesc() throws a RepoDbError for a malformed size or SHA-256", () => {
  for (const [from, to] of [["70000", "-5"], ["70000", "7e4"], [SHA, "xyz"], [SHA, SHA + "0"]]) {
    assert.throws(
      () => parseDesc(DESC.replace(from, to)),
      (error: unknown) =>
        error instanceof RepoDbError &&
        /entry for vim-2:9.1.0-1-x86_64.pkg.tar.zst has a malformed size or SHA-256/.test(error.message),
      `${from} -> ${to}`,
    );
  }
});

Deno.test("isDescPath() accepts <name>-<version>/desc only", () => {
  for (const path of ["vim-9.1-1/desc", "./vim-9.1-1/desc", "vim-9.1-1//desc"]) {
    assert.equal(isDescPath(path), true, path);
  }
  for (const path of ["desc", "vim-9.1-1/files", "a/vim-9.1-1/desc", "vim-9.1-1/desc/x", "vim-9.1-1/"]) {
    assert.equal(isDescPath(path), false, path);
  }
});

Deno.test("parseDesc() keeps none of the desc text its entry was cut from", async () => {
  // In a process of its own, to collect garbage (--expose-gc) and read the heap around the entries alone.
  const probe = `import { parseDesc } from ${
    JSON.stringify(import.meta.resolve("../../src/repo/repo_db_desc.ts"))
  };
    const desc = (i) => "%FILENAME%\\nsome-package-" + i + "-1.2.3-1-x86_64.pkg.tar.zst\\n\\n%NAME%\\nsome-package-" + i +
      "\\n\\n%VERSION%\\n1.2.3-1\\n\\n%DESC%\\n" + "A long description. ".repeat(50) + "\\n\\n%CSIZE%\\n1234\\n\\n" +
      "%SHA256SUM%\\n" + String(i).padStart(64, "a") + "\\n\\n%PGPSIG%\\n" + "iQIzBAABCAAdFiEE".repeat(40) + "\\n";
    const entries = [];
    gc(); const before = Deno.memoryUsage().heapUsed;
    for (let i = 0; i < 5000; i++) entries.push(parseDesc(desc(i)));
    gc(); gc();
    console.log(Math.round((Deno.memoryUsage().heapUsed - before) / entries.length), desc(0).length);`;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--expose-gc", probe],
    stderr: "inherit",
  }).output();
  const [perEntry, descLength] = new TextDecoder().decode(output.stdout).trim().split(" ").map(Number);
  assert(descLength > 1500, `the desc text (${descLength} bytes) is larger than an entry should be`);
  assert(perEntry < 500, `each entry keeps ${perEntry} bytes of heap (the desc text is ${descLength})`);
});
