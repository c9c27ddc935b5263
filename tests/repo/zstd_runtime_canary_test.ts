/**
 * Canary: why flexo keeps its own zstd reader (src/repo/zstd_stream.ts) instead of the runtime's `node:zlib`.
 *
 * In Deno 2.9, `node:zlib`'s zstd
 * - returns truncated output without an error when its input is cut short, and
 * - throws a content checksum mismatch where no error handler or callback sees it: the process dies.
 *
 * These tests demonstrate both faults and FAIL once the runtime behaves (or behaves differently): then look
 * again at whether src/repo/zstd_stream.ts is still needed. The uncatchable throw would end the test process,
 * so that part runs in a subprocess whose exit and output are looked at.
 *
 * The frames are made by the zstd program, as the repositories' are. (A frame made by `zstdCompressSync`,
 * which ends in an empty block, is even accepted with a wrong checksum byte by Deno 2.9.)
 */

import zlib from "node:zlib";
import { ByteReader } from "../../src/byte_reader.ts";
import { zstdStream } from "../../src/repo/zstd_stream.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { assertToolsAvailable } from "../helpers/make_repo.ts";

const REPLACE = "consider replacing src/repo/zstd_stream.ts";

/** 600 kB of letters (compressible, several blocks), and that compressed by the zstd program with a checksum. */
async function sample(): Promise<{ data: Uint8Array; compressed: Uint8Array }> {
  await assertToolsAvailable(["zstd"]);
  const data = randomBytes(600_000).map((byte) => 97 + (byte & 15));
  const child = new Deno.Command("zstd", { args: ["-q", "-c", "--check"], stdin: "piped", stdout: "piped" })
    .spawn();
  const writer = child.stdin.getWriter();
  await writer.write(data);
  await writer.close();
  const compressed = (await child.output()).stdout;
  assertEquals(compressed[4] & 0x04, 0x04, "the frame carries a content checksum");
  return { data, compressed };
}

/** What `node:zlib`'s streaming zstd decompressor makes of `input`: its output length, or its error. */
function zlibStream(input: Uint8Array): Promise<{ bytes: number } | { error: string }> {
  return new Promise((resolve) => {
    const decompressor = zlib.createZstdDecompress();
    let bytes = 0;
    decompressor.on("data", (chunk: Uint8Array) => bytes += chunk.length);
    decompressor.on("error", (error: Error) => resolve({ error: error.message }));
    decompressor.on("end", () => resolve({ bytes }));
    decompressor.end(input);
  });
}

/** What flexo's own reader makes of `input`: its output length, or its error. */
async function flexoStream(input: Uint8Array): Promise<{ bytes: number } | { error: string }> {
  const reader = new ByteReader(ReadableStream.from([input.slice()]), (error) => error as Error);
  try {
    return { bytes: (await new Response(await zstdStream(reader)).arrayBuffer()).byteLength };
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

Deno.test("canary: node:zlib zstd returns truncated output without an error when the input is cut short", async () => {
  const { data, compressed } = await sample();
  for (const keep of [compressed.length - 2, compressed.length - 1_000, Math.floor(compressed.length / 2)]) {
    const cut = compressed.subarray(0, keep);
    const streamed = await zlibStream(cut);
    assert(
      !("error" in streamed),
      `node:zlib zstd now reports truncated input (stream, ${keep} of ${compressed.length} bytes: ` +
        `${"error" in streamed && streamed.error}): ${REPLACE}`,
    );
    assert(streamed.bytes <= data.length, "no more than the data");
    let synchronous: number;
    try {
      synchronous = zlib.zstdDecompressSync(cut).length;
    } catch (error) {
      throw new Error(
        `node:zlib zstd now reports truncated input (zstdDecompressSync: ${error}): ${REPLACE}`,
      );
    }
    assert(synchronous <= data.length, "no more than the data");
    // flexo's reader says so, which is why it is kept.
    const ours = await flexoStream(cut);
    assert("error" in ours, `zstdStream() reports the truncation, ${keep} of ${compressed.length} bytes`);
  }
  assertEquals(await zlibStream(compressed), { bytes: data.length }, "the whole input decompresses");
});

/** Decompresses its standard input with `node:zlib` in the given form, handlers attached as a user would. */
function childSource(form: "stream" | "callback"): string {
  return `
import zlib from "node:zlib";
const input = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
const report = (line) => console.log(line);
if (${JSON.stringify(form)} === "stream") {
  const decompressor = zlib.createZstdDecompress();
  let bytes = 0;
  decompressor.on("data", (chunk) => bytes += chunk.length);
  decompressor.on("error", (error) => report("caught: " + error.message));
  decompressor.on("end", () => report("ended: " + bytes + " bytes"));
  decompressor.end(input);
} else {
  zlib.zstdDecompress(input, (error, out) => report(error ? "caught: " + error.message : "ended: " + out.length + " bytes"));
}
`;
}

/** Runs {@linkcode childSource} in a subprocess of this runtime on `input`. */
async function runChild(form: "stream" | "callback", input: Uint8Array) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", childSource(form)],
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000), // the child ends at once either way; this only bounds a hang
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(input);
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout).trim(), stderr: decoder.decode(stderr).trim() };
}

for (const form of ["stream", "callback"] as const) {
  Deno.test(`canary: node:zlib zstd throws a checksum mismatch where it cannot be caught (${form})`, async () => {
    const { compressed } = await sample();
    const corrupt = compressed.slice();
    corrupt[corrupt.length - 1] ^= 0xff; // the last byte of the frame's content checksum
    const run = await runChild(form, corrupt);
    const seen = `exit ${run.code}, stdout ${JSON.stringify(run.stdout)}, stderr ${
      JSON.stringify(run.stderr)
    }`;
    assert(
      !run.stdout.startsWith("caught:"),
      `node:zlib zstd now reports a checksum mismatch as an error that can be caught (${form}; ${seen}): ${REPLACE}`,
    );
    assert(
      run.code !== 0 && run.stdout === "" && /Uncaught.*checksum/i.test(run.stderr),
      `node:zlib zstd changed what it does with a checksum mismatch (${form}; ${seen}): look again at ` +
        `whether src/repo/zstd_stream.ts is still needed`,
    );
    // flexo's reader rejects the same input as an ordinary error.
    const ours = await flexoStream(corrupt);
    assert(
      "error" in ours && /checksum/.test(ours.error),
      `zstdStream() reports the mismatch: ${JSON.stringify(ours)}`,
    );
    // And the child does work on good input: the fault is the checksum's, not the subprocess's.
    assertEquals(await runChild(form, compressed), { code: 0, stdout: "ended: 600000 bytes", stderr: "" });
  });
}
