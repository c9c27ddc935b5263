import assert from "node:assert/strict";
import { ByteReader, concat } from "../../src/byte_reader.ts";
import { RepoDbError } from "../../src/repo/repo_db_desc.ts";
import { looksLikeTar, readTarTexts, TAR_BLOCK } from "../../src/repo/repo_db_tar.ts";

const encoder = new TextEncoder();

/** A ustar header; `size` may be given as raw field bytes (for base-256 sizes). */
function header(
  name: string,
  size: number | Uint8Array,
  options: { type?: string; prefix?: string; checksumDelta?: number } = {},
): Uint8Array {
  const block = new Uint8Array(TAR_BLOCK);
  const put = (offset: number, text: string) => block.set(encoder.encode(text), offset);
  put(0, name);
  put(100, "0000644\0");
  if (typeof size === "number") put(124, size.toString(8).padStart(11, "0") + "\0");
  else block.set(size, 124);
  put(136, "00000000000\0");
  put(156, options.type ?? "0");
  put(257, "ustar\0");
  put(263, "00");
  if (options.prefix) put(345, options.prefix);
  block.fill(0x20, 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0) + (options.checksumDelta ?? 0);
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

function padded(data: Uint8Array): Uint8Array {
  return concat([data], Math.ceil(data.length / TAR_BLOCK) * TAR_BLOCK);
}

function entry(name: string, data: string | Uint8Array, type = "0"): Uint8Array {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  return concat([header(name, bytes.length, { type }), padded(bytes)]);
}

/** A pax extended header entry holding the records. */
function pax(records: Record<string, string>, type = "x"): Uint8Array {
  const text = Object.entries(records).map(([key, value]) => {
    const body = ` ${key}=${value}\n`;
    let length = body.length + 1;
    while (String(length).length + body.length !== length) length++;
    return `${length}${body}`;
  }).join("");
  return entry("PaxHeader", text, type);
}

const END = new Uint8Array(2 * TAR_BLOCK);

/** Reads `parts` as one archive in 100-byte chunks; returns the texts read and whether the source ended. */
async function texts(parts: Uint8Array[], wanted = (path: string) => path.endsWith("desc")) {
  const bytes = concat(parts);
  let offset = 0;
  const state = { sourceEnded: false, read: [] as [string, string][] };
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.length) {
        state.sourceEnded = true;
        controller.close();
        return;
      }
      controller.enqueue(bytes.slice(offset, offset + 100));
      offset += 100;
    },
  });
  await readTarTexts(new ByteReader(source, (error) => error as Error), {
    wanted,
    onText: (path, text) => state.read.push([path, text]),
  });
  return state;
}

async function rejects(parts: Uint8Array[], pattern: RegExp): Promise<void> {
  await assert.rejects(texts(parts), (error: unknown) => {
    assert.ok(error instanceof RepoDbError, `expected a RepoDbError, got ${error}`);
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("readTarTexts() hands over the wanted entries, skips the rest and reads the source to its end", async () => {
  const state = await texts([
    entry("a-1-1/desc", "first"),
    entry("a-1-1/files", new Uint8Array(3000).fill(7)),
    entry("b-1-1/desc", "x".repeat(TAR_BLOCK)),
    entry("b-1-1/desc", "a directory", "5"),
    END,
    new Uint8Array(700), // trailing blocks after the end marker
  ]);
  assert.deepEqual(state.read, [["a-1-1/desc", "first"], ["b-1-1/desc", "x".repeat(TAR_BLOCK)]]);
  assert.equal(state.sourceEnded, true);
});

Deno.test("readTarTexts() takes paths from the ustar prefix, pax headers and GNU long names", async () => {
  const longName = `${"long-name-".repeat(15)}1-1/desc`;
  const state = await texts([
    concat([header("desc", 3, { prefix: "c-1-1" }), padded(encoder.encode("ccc"))]),
    pax({ path: longName, mtime: "1700000000" }),
    entry("short/desc", "pax"),
    pax({ path: "global/desc" }, "g"), // global: not the next entry's path
    entry("g-1-1/desc", "global"),
    entry("././@LongLink", `${longName}-gnu\0`, "L"),
    entry("cut/desc", "gnu"),
    entry("././@LongLink", "a link target", "K"),
    entry("k-1-1/desc", "link name ignored"),
    END,
  ], () => true);
  assert.deepEqual(state.read, [
    ["c-1-1/desc", "ccc"],
    [longName, "pax"],
    ["g-1-1/desc", "global"],
    [`${longName}-gnu`, "gnu"],
    ["k-1-1/desc", "link name ignored"],
  ]);
});

Deno.test("readTarTexts() takes sizes from pax headers and GNU base-256 fields", async () => {
  const base256 = new Uint8Array(12);
  base256[0] = 0x80;
  base256[10] = 0x02; // 2 * 256 + 0x58 = 600
  base256[11] = 0x58;
  const state = await texts([
    pax({ size: "600" }),
    concat([header("big/files", 0), padded(new Uint8Array(600))]),
    concat([header("huge/files", base256), padded(new Uint8Array(600))]),
    entry("a-1-1/desc", "after"),
    END,
  ]);
  assert.deepEqual(state.read, [["a-1-1/desc", "after"]]);
});

Deno.test("readTarTexts() rejects truncated and corrupt archives, naming the problem", async () => {
  const desc = entry("a-1-1/desc", "text");
  await rejects([desc], /ends without its end-of-archive marker/);
  await rejects([desc.subarray(0, TAR_BLOCK + 10)], /ends in the middle of an entry/);
  await rejects([desc.subarray(0, 300)], /ends in the middle of an entry/);
  await rejects([header("a-1-1/files", 5000), new Uint8Array(1024)], /ends in the middle of an entry/);
  await rejects([header("a-1-1/desc", 10, { checksumDelta: 1 }), END], /is not a tar archive/);
  await rejects(
    [desc, header("b-1-1/desc", 10, { checksumDelta: 1 }), END],
    /tar header #2 has a bad checksum/,
  );
  await rejects([header("a-1-1/desc", 2 * 1024 * 1024), END], /a 2097152 byte metadata entry/);
  await rejects([entry("PaxHeader", "99 path=x\n", "x"), END], /malformed pax header/);
  const badSize = header("a-1-1/desc", concat([encoder.encode("9z")], 12));
  await rejects([desc, badSize, END], /tar header with an unreadable size/);
});

Deno.test("looksLikeTar() accepts a ustar header or an empty archive's zero block", () => {
  assert.equal(looksLikeTar(header("a", 0)), true);
  assert.equal(looksLikeTar(new Uint8Array(TAR_BLOCK)), true);
  assert.equal(looksLikeTar(new Uint8Array(TAR_BLOCK).fill(1)), false);
  assert.equal(looksLikeTar(header("a", 0).subarray(0, 300)), false, "shorter than a block");
});
