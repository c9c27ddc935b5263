import { assertEquals } from "../helpers/assert.ts";
import { smapsBreakdown } from "../../scripts/smaps_breakdown.ts";

const EXE = "/usr/bin/deno";

function mapping(range: string, perms: string, path: string, rssKb: number, anonymousKb = 0): string {
  return [
    `${range} ${perms} 00000000 00:00 0          ${path}`.trimEnd(),
    `Size:             4 kB`,
    `Rss:              ${rssKb} kB`,
    `Anonymous:        ${anonymousKb} kB`,
    "VmFlags: rd mr mw me",
  ].join("\n");
}

Deno.test("smapsBreakdown() sorts resident pages into the executable, arenas, stacks, V8 and files", () => {
  const smaps = [
    mapping("55d000000000-55d001000000", "r-xp", EXE, 100),
    mapping("55d001000000-55d001100000", "rw-p", EXE, 30, 30),
    mapping("55d001100000-55d001200000", "r--p", EXE, 20, 4),
    mapping("55d002000000-55d003000000", "rw-p", "[heap]", 50),
    // A further malloc arena: aligned to 64 MiB.
    mapping("7f0004000000-7f0004100000", "rw-p", "", 7, 7),
    // A thread's stack after its guard page.
    mapping("7f0010000000-7f0010001000", "---p", "", 0),
    mapping("7f0010001000-7f0010201000", "rw-p", "", 3, 3),
    // V8's pages and other anonymous memory.
    mapping("7f0020040000-7f0020080000", "rw-p", "", 11, 11),
    mapping("7f0030000000-7f0030100000", "r-xp", "/usr/lib/libc.so.6", 5),
    mapping("7ffd00000000-7ffd00100000", "rw-p", "[stack]", 2, 2),
    mapping("7ffd00200000-7ffd00201000", "r-xp", "[vdso]", 1),
  ].join("\n");
  const kib = (n: number) => n * 1024;
  assertEquals(smapsBreakdown(smaps, EXE), {
    "executable, clean": kib(116),
    "executable, written": kib(34),
    "V8 heap and other anonymous": kib(11),
    "malloc main arena": kib(50),
    "malloc other arenas": kib(7),
    "thread stacks": kib(5),
    "other files": kib(5),
  });
});
