/**
 * The C library binding of sendfile: loading it (or saying why not), errno, and socket addresses.
 */

import {
  addressBytes,
  errno,
  LIBC_PATHS,
  libcFreeSpace,
  libcPathProbe,
  LINUX,
  openFilesLimit,
  openLibc,
  parseSockaddr,
} from "../../src/server/libc.ts";
import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { withTempDir } from "../helpers/temp_dir.ts";
import { assertPathProbeCases } from "../helpers/path_probe_cases.ts";

const v4 = (a: number, b: number, c: number, d: number) =>
  Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d]);

Deno.test("openLibc() loads glibc from one of its usual places on this machine", () => {
  const loaded = openLibc();
  assert(loaded.ok, loaded.ok ? "" : loaded.reason);
  const exists = (path: string) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  };
  assert(LIBC_PATHS.some(exists), "some LIBC_PATHS entry exists");
});

Deno.test("openLibc() makes none of libc's synchronous functions until one is called, then all of them once", () => {
  const made: string[][] = [];
  const dlopen = (path: string, symbols: Deno.ForeignLibraryInterface) => {
    made.push(Object.keys(symbols));
    return Deno.dlopen(path, symbols);
  };
  const loaded = openLibc(LIBC_PATHS, dlopen);
  assert(loaded.ok, loaded.ok ? "" : loaded.reason);
  const nonblocking = (names: string[]): boolean =>
    names.every((name) => name === "malloc_trim" || name === "getrlimit");
  assert(made.every(nonblocking), `only nonblocking functions at first: ${JSON.stringify(made)}`);
  const before = made.length;
  const copy = { ...loaded.libc };
  assertEquals(copy.close(-1), -1, "a copy's function loads the library");
  assertEquals(errno(loaded.libc), 9, "EBADF");
  assertEquals(loaded.libc.close(-1), -1);
  assertEquals(made.length, before + 1, "the synchronous functions were made once");
  assert(made[before].includes("sendfile") && made[before].includes("access"), JSON.stringify(made[before]));
});

Deno.test("openLibc()'s mallocTrim and openFilesLimit run without making the synchronous functions", async () => {
  const made: string[][] = [];
  const loaded = openLibc(LIBC_PATHS, (path, symbols) => {
    made.push(Object.keys(symbols));
    return Deno.dlopen(path, symbols);
  });
  assert(loaded.ok, loaded.ok ? "" : loaded.reason);
  assertEquals(typeof await loaded.mallocTrim?.(), "number");
  const other = openLibc();
  assert(other.ok);
  assertEquals(await loaded.openFilesLimit?.(), openFilesLimit(other.libc), "the limit getrlimit reads");
  assertEquals(made.length, 1, JSON.stringify(made));
});

Deno.test("openLibc() says why it cannot load libc: no permitted path, no such file", () => {
  const none = openLibc([]);
  assert(!none.ok && none.reason.includes("--allow-ffi"), JSON.stringify(none));
  const missing = openLibc(["/nonexistent/libc.so.6"]);
  assert(!missing.ok && missing.reason.includes("/nonexistent/libc.so.6"), JSON.stringify(missing));
});

Deno.test("openLibc() without the ffi permission says which flag is missing", async () => {
  await withTempDir(async (dir) => {
    const script = join(dir, "probe.ts");
    await Deno.writeTextFile(
      script,
      `import { openLibc } from ${JSON.stringify(new URL("../../src/server/libc.ts", import.meta.url).href)};
const r = openLibc(); console.log(r.ok ? "loaded" : r.reason);`,
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--no-prompt", "--allow-read", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stdout);
    assert(output.success, new TextDecoder().decode(output.stderr));
    assert(text.includes(`--allow-ffi=${LIBC_PATHS.join(",")}`), text);
  });
});

Deno.test("errno() reads the error of the last failed call", () => {
  const loaded = openLibc();
  assert(loaded.ok);
  assertEquals(loaded.libc.close(-1), -1);
  assertEquals(errno(loaded.libc), 9, "EBADF");
  assertEquals(loaded.libc.open(new TextEncoder().encode("/nonexistent/file\0"), LINUX.O_RDONLY_CLOEXEC), -1);
  assertEquals(errno(loaded.libc), 2, "ENOENT");
});

Deno.test("libcPathProbe() is true only when nothing is there, following symbolic links as stat does", async () => {
  const loaded = openLibc();
  assert(loaded.ok, loaded.ok ? "" : loaded.reason);
  await assertPathProbeCases(libcPathProbe(loaded.libc));
});

Deno.test("addressBytes() reads IPv4 and IPv6 addresses as Deno writes them, IPv4 mapped into IPv6", () => {
  assertEquals(addressBytes("127.0.0.1"), v4(127, 0, 0, 1));
  assertEquals(addressBytes("::ffff:10.1.2.3"), v4(10, 1, 2, 3));
  assertEquals(addressBytes("::1"), Uint8Array.from([...new Array(15).fill(0), 1]));
  assertEquals(addressBytes("::"), new Uint8Array(16));
  assertEquals(addressBytes("[fe80::1%eth0]"), Uint8Array.from([0xfe, 0x80, ...new Array(13).fill(0), 1]));
  assertEquals(
    addressBytes("2001:db8:0:0:1:0:0:1"),
    Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]),
  );
  assertEquals(addressBytes("2001:db8::1:0:0:1"), addressBytes("2001:db8:0:0:1:0:0:1"));
  for (const bad of ["", "localhost", "1.2.3", "1::2::3", "1:2:3:4:5:6:7:8:9", "12345::1", "1:2:3:4:5:6:7"]) {
    assertEquals(addressBytes(bad), undefined, bad);
  }
});

Deno.test("parseSockaddr() reads sockaddr_in and sockaddr_in6, and nothing else", () => {
  const inet = new Uint8Array(16);
  inet.set([LINUX.AF_INET, 0, 0x1e, 0xd6, 192, 168, 1, 20]);
  assertEquals(parseSockaddr(inet), { address: v4(192, 168, 1, 20), port: 7894 });
  const inet6 = new Uint8Array(28);
  inet6.set([LINUX.AF_INET6, 0, 0x1e, 0xd6]);
  inet6[23] = 1;
  assertEquals(parseSockaddr(inet6), { address: addressBytes("::1"), port: 7894 });
  const unix = new Uint8Array(16);
  unix.set([1, 0]);
  assertEquals(parseSockaddr(unix), undefined);
});

Deno.test("openFilesLimit() reads the same soft limit as the shell's ulimit -n", async () => {
  const loaded = openLibc();
  assert(loaded.ok);
  const output = await new Deno.Command("sh", { args: ["-c", "ulimit -n"], stdout: "piped" }).output();
  const shell = new TextDecoder().decode(output.stdout).trim();
  const limit = openFilesLimit(loaded.libc);
  assertEquals(String(limit === Number.MAX_SAFE_INTEGER ? "unlimited" : limit), shell);
});

Deno.test("libcFreeSpace() reads the free space that stat -f reports, and undefined for a missing path", async () => {
  const loaded = openLibc();
  assert(loaded.ok, loaded.ok ? "" : loaded.reason);
  const freeSpace = libcFreeSpace(loaded.libc);
  await withTempDir(async (dir) => {
    // %S the block size, %f the free blocks (root's view), %a those free for other users.
    const output = await new Deno.Command("stat", { args: ["-f", "-c", "%S %f %a", dir] }).output();
    const [size, free, available] = new TextDecoder().decode(output.stdout).trim().split(" ").map(Number);
    const expected = size * (Deno.uid() === 0 ? free : available);
    const measured = freeSpace(dir);
    assert(measured !== undefined, "the free space is known");
    // Other processes write meanwhile: within 256 MiB.
    assert(Math.abs(measured - expected) < 256 * 1024 * 1024, `${measured} bytes, stat -f says ${expected}`);
    assertEquals(freeSpace(join(dir, "missing", "folder")), undefined);
  });
});
