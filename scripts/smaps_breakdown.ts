/**
 * Where a process's resident memory is, from the text of its `/proc/PID/smaps`: the pages of the executable
 * (clean copies of the file, and its written data), malloc's arenas, thread stacks, V8's heap and the rest of
 * the anonymous memory, and other files. Used by `memory_load.ts --breakdown`.
 *
 * The kinds of anonymous memory are told apart by their shape, as glibc 2.36 and Deno 2.9 make them: glibc's
 * main arena is the `[heap]` mapping, each further arena a mapping aligned to 64 MiB (`HEAP_MAX_SIZE`), a
 * thread's stack a writable mapping of 1-9 MiB right after its 4-64 KiB guard page; the rest of the anonymous
 * memory is V8's (its heap's pages, its code) and other mmap'd blocks.
 *
 * @module
 */

/** The kinds of resident memory, in the order they are printed. */
export const KINDS = [
  "executable, clean",
  "executable, written",
  "V8 heap and other anonymous",
  "malloc main arena",
  "malloc other arenas",
  "thread stacks",
  "other files",
] as const;

/** One kind of {@linkcode KINDS}. */
export type Kind = typeof KINDS[number];

const HEADER = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+ *(.*)$/;
const FIELD = /^(Rss|Anonymous):\s+(\d+) kB$/;
const MIB = 1048576n;

/** Resident bytes per kind in `smaps`, for a process whose executable is `executable`. */
export function smapsBreakdown(smaps: string, executable: string): Record<Kind, number> {
  const totals = Object.fromEntries(KINDS.map((kind) => [kind, 0])) as Record<Kind, number>;
  let kind: Kind | "executable" | undefined;
  let previous = { end: -1n, perms: "", size: 0n };
  let fields = { Rss: 0, Anonymous: 0 };
  const finish = () => {
    if (kind === "executable") {
      totals["executable, written"] += fields.Anonymous * 1024;
      totals["executable, clean"] += (fields.Rss - fields.Anonymous) * 1024;
    } else if (kind !== undefined) totals[kind] += fields.Rss * 1024;
  };
  for (const line of smaps.split("\n")) {
    const head = HEADER.exec(line);
    if (head === null) {
      const field = FIELD.exec(line);
      if (field !== null) fields[field[1] as "Rss" | "Anonymous"] = Number(field[2]);
      continue;
    }
    finish();
    fields = { Rss: 0, Anonymous: 0 };
    const start = BigInt(`0x${head[1]}`);
    const end = BigInt(`0x${head[2]}`);
    const [perms, path] = [head[3], head[4]];
    const size = end - start;
    const afterGuard = previous.perms.startsWith("---") && previous.end === start && previous.size <= 65536n;
    if (path === executable) kind = "executable";
    else if (path === "[heap]") kind = "malloc main arena";
    else if (path === "[stack]") kind = "thread stacks";
    else if (path.startsWith("/")) kind = "other files";
    else if (path.startsWith("[")) kind = undefined;
    else if (start % (64n * MIB) === 0n && perms.startsWith("rw")) kind = "malloc other arenas";
    else if (afterGuard && perms.startsWith("rw") && size >= MIB && size <= 9n * MIB) kind = "thread stacks";
    else kind = "V8 heap and other anonymous";
    previous = { end, perms, size };
  }
  finish();
  return totals;
}
