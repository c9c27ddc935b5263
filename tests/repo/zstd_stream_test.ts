import assert from "node:assert/strict";
import { ByteReader, concat } from "../../src/byte_reader.ts";
import { zstdStream } from "../../src/repo/zstd_stream.ts";
import { randomBytes } from "../helpers/bytes.ts";
import { assertToolsAvailable } from "../helpers/make_repo.ts";

/** `bytes` compressed by the zstd program with the given options. */
async function compress(bytes: Uint8Array, args: string[] = []): Promise<Uint8Array> {
  await assertToolsAvailable(["zstd"]);
  const child = new Deno.Command("zstd", { args: ["-q", "-c", ...args], stdin: "piped", stdout: "piped" })
    .spawn();
  const writer = child.stdin.getWriter();
  await writer.write(bytes);
  await writer.close();
  return (await child.output()).stdout;
}

/** What zstdStream() makes of `bytes`, fed in chunks of 1000 bytes. */
async function decompress(bytes: Uint8Array): Promise<Uint8Array> {
  const chunks = Array.from(
    { length: Math.ceil(bytes.length / 1000) },
    (_, i) => bytes.slice(i * 1000, i * 1000 + 1000),
  );
  const reader = new ByteReader(ReadableStream.from(chunks), (error) => error as Error);
  return new Uint8Array(await new Response(await zstdStream(reader)).arrayBuffer());
}

/** Text that compresses well, then incompressible bytes (stored as raw blocks). */
function sample(): Uint8Array {
  return concat([new TextEncoder().encode("%NAME%\nzstd\n\n".repeat(5000)), randomBytes(200_000)]);
}

Deno.test("zstdStream() decompresses frames with and without checksums, and skips skippable frames", async () => {
  const data = sample();
  assert.deepEqual(await decompress(await compress(data)), data);
  assert.deepEqual(await decompress(await compress(data, ["--no-check"])), data);
  const half = data.length / 2;
  const skippable = Uint8Array.of(0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3);
  const frames = concat([
    skippable,
    await compress(data.subarray(0, half)),
    skippable,
    await compress(data.subarray(half), ["--no-check"]),
  ]);
  assert.deepEqual(await decompress(frames), data);
  assert.deepEqual(await decompress(new Uint8Array(0)), new Uint8Array(0));
});

Deno.test("zstdStream() notices a changed byte that only the content checksum shows", async () => {
  const compressed = await compress(sample());
  compressed[compressed.length - 100_000] ^= 0x01; // inside the raw blocks of the noise
  await assert.rejects(decompress(compressed), /^Error: zstd frame content checksum does not match$/);
});

Deno.test("zstdStream() rejects truncated data, trailing garbage, reserved blocks and huge windows", async () => {
  const compressed = await compress(sample());
  await assert.rejects(
    decompress(compressed.subarray(0, compressed.length - 2)),
    /ends in the middle of a frame checksum/,
  );
  await assert.rejects(decompress(compressed.subarray(0, 50_000)), /ends in the middle of a block/);
  await assert.rejects(decompress(compressed.subarray(0, 3)), /ends in the middle of a frame header/);
  await assert.rejects(
    decompress(Uint8Array.of(0x50, 0x2a, 0x4d, 0x18, 30, 0, 0, 0, 1)),
    /ends in the middle of a skippable frame/,
  );
  await assert.rejects(
    decompress(concat([compressed, new TextEncoder().encode("garbage")])),
    /data after the last zstd frame is not a zstd frame/,
  );
  await assert.rejects(
    decompress(Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x07, 0x00, 0x00)),
    /zstd block of reserved type/,
  );
  // A window descriptor of 2 TiB is refused before fzstd would allocate it.
  await assert.rejects(
    decompress(Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf8, 0x01, 0x00, 0x00)),
    /needs a window of more than 128 MiB/,
  );
});
