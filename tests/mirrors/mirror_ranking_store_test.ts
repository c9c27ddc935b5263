import assert from "node:assert/strict";
import { join } from "node:path";
import {
  parseRanking,
  RANKING_FILE_VERSION,
  rankingAgeMs,
  readMirrorListSync,
  readRankingSync,
  writeMirrorList,
  writeRanking,
} from "../../src/mirrors/mirror_ranking_store.ts";
import { withTempDir } from "../helpers/temp_dir.ts";

const MIRRORS = [
  { url: "http://127.0.0.1:8001/", latencyMs: 12.5, countryCode: "DE", score: 0.9 },
  { url: "http://127.0.0.1:8002/", latencyMs: 40, countryCode: "", score: null },
];

function collectWarnings() {
  const warnings: string[] = [];
  return { warnings, log: { warn: (m: string) => warnings.push(m) } };
}

Deno.test("writeRanking() creates the directory and readRankingSync() reads the ranking back", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "state", "nested", "latency_test_results.json");
    await writeRanking(path, { timestamp: "2024-05-14T10:00:00.000Z", settings: "s1", mirrors: MIRRORS });
    const { warnings, log } = collectWarnings();
    assert.deepEqual(readRankingSync(path, { log }), {
      version: RANKING_FILE_VERSION,
      timestamp: "2024-05-14T10:00:00.000Z",
      settings: "s1",
      mirrors: MIRRORS,
    });
    assert.deepEqual(warnings, []);
    const stored = JSON.parse(await Deno.readTextFile(path));
    assert.equal(stored.version, 4);
    assert.deepEqual(Object.keys(stored.mirrors[0]).sort(), ["countryCode", "latencyMs", "score", "url"]);
  });
});

Deno.test("writeRanking() replaces the file atomically and leaves no temporary file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "latency_test_results.json");
    await Deno.writeTextFile(path, "old");
    await writeRanking(path, { timestamp: "2024-05-14T10:00:00.000Z", mirrors: MIRRORS.slice(1) });
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names, ["latency_test_results.json"]);
    assert.deepEqual(readRankingSync(path)?.mirrors, MIRRORS.slice(1));
  });
});

Deno.test("writeRanking() and writeMirrorList() remove the temporary files that writes killed earlier left, and nothing else", async () => {
  await withTempDir(async (dir) => {
    const ranking = join(dir, "latency_test_results.json");
    const list = join(dir, "mirrorlist");
    const hourAgo = new Date(Date.now() - 3_600_000);
    // What a kill -9 between the temporary file's creation and its rename leaves, in this and older versions.
    const killed = [
      `.latency_test_results.json.${crypto.randomUUID()}.tmp`,
      `.mirrorlist.${crypto.randomUUID()}.tmp`,
      `.${crypto.randomUUID()}.tmp`,
    ];
    // Another process's write in progress, and files that are not flexo's.
    const kept = [`.mirrorlist.${crypto.randomUUID()}.tmp`, "notes.tmp", ".other.tmp"];
    for (const name of [...killed, ...kept]) await Deno.writeTextFile(join(dir, name), "half");
    for (const name of [...killed, ...kept.slice(1)]) await Deno.utime(join(dir, name), hourAgo, hourAgo);
    await writeRanking(ranking, { timestamp: "2024-05-14T10:00:00.000Z", mirrors: MIRRORS });
    await writeMirrorList(list, ["https://a.example/"]);
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names.sort(), ["latency_test_results.json", "mirrorlist", ...kept].sort());
  });
});

Deno.test("writeRanking() explains a failure and removes its temporary file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "taken");
    await Deno.mkdir(join(path, "not-empty"), { recursive: true });
    await assert.rejects(
      writeRanking(path, { timestamp: "2024-05-14T10:00:00.000Z", mirrors: MIRRORS }),
      (e: unknown) => e instanceof Error && e.message.includes(path) && /writable/.test(e.message),
    );
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names, ["taken"]);
  });
});

Deno.test("readRankingSync() returns undefined without a warning when the file is missing", async () => {
  await withTempDir((dir) => {
    const { warnings, log } = collectWarnings();
    assert.equal(readRankingSync(join(dir, "missing.json"), { log }), undefined);
    assert.deepEqual(warnings, []);
  });
});

Deno.test("readRankingSync() and readMirrorListSync() treat an unreadable file as absent, with a warning naming the setting, and a missing one quietly", async () => {
  await withTempDir(async (dir) => {
    // A directory where the file should be: reading it fails, and not with NotFound.
    const path = join(dir, "unreadable");
    await Deno.mkdir(path);
    const { warnings, log } = collectWarnings();
    assert.equal(readRankingSync(path, { log }), undefined);
    assert.equal(readMirrorListSync(path, { log }), undefined);
    assert.equal(readMirrorListSync(join(dir, "missing"), { log }), undefined);
    assert.equal(warnings.length, 2, warnings.join("\n"));
    assert.match(
      warnings[0],
      /^Could not read the mirror ranking .*unreadable.*mirrorlist_latency_test_results_file/,
    );
    assert.match(warnings[1], /^Could not read the mirror list .*unreadable.*mirrorlist_fallback_file/);
  });
});

Deno.test("readRankingSync() treats a corrupt file as absent, with a warning", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "latency_test_results.json");
    const cases = [
      '{"version": 4, "timestamp": "2024-05-14T10:00:00Z", "mirrors": [',
      JSON.stringify({ version: 4, timestamp: "yesterday", mirrors: [] }),
      JSON.stringify({ version: 4, timestamp: "2024-05-14T10:00:00Z", mirrors: [{ url: "http://x/" }] }),
      JSON.stringify({ version: 99, timestamp: "2024-05-14T10:00:00Z", mirrors: [] }),
      // Mirrors that no request could reach: each would be used as it is until the ranking is due (8 days).
      ...["mirror.example/arch/", "file:///var/cache/", "ftp://mirror.example/"].map((url) =>
        JSON.stringify({
          version: 4,
          timestamp: "2024-05-14T10:00:00Z",
          mirrors: [{ url, latencyMs: 1, countryCode: "", score: null }],
        })
      ),
      "[]",
    ];
    for (const text of cases) {
      await Deno.writeTextFile(path, text);
      const { warnings, log } = collectWarnings();
      assert.equal(readRankingSync(path, { log }), undefined, text);
      assert.equal(warnings.length, 1, text);
      assert.ok(warnings[0].includes(path), warnings[0]);
    }
  });
});

Deno.test("readRankingSync() warns when the file cannot be read", async () => {
  await withTempDir((dir) => {
    const { warnings, log } = collectWarnings();
    assert.equal(readRankingSync(dir, { log }), undefined);
    assert.equal(warnings.length, 1);
  });
});

Deno.test("parseRanking() reads the ranking file of flexo (Rust, version 3)", () => {
  const flexoFile = {
    version: 3,
    timestamp: "2024-05-14T10:00:00.123456789Z",
    download_providers: [{
      uri: "https://mirror.moson.org/arch",
      name: "https://mirror.moson.org/arch",
      mirror_results: {
        total_time: { secs: 0, nanos: 95_000_000 },
        namelookup_duration: { secs: 0, nanos: 15_000_000 },
        connect_duration: { secs: 0, nanos: 40_000_000 },
        pretransfer_time: { secs: 0, nanos: 60_000_000 },
        starttransfer_time: { secs: 0, nanos: 90_000_000 },
      },
      country_code: "DE",
    }],
  };
  const ranking = parseRanking(JSON.stringify(flexoFile));
  assert.notEqual(typeof ranking, "string");
  assert.deepEqual(ranking, {
    version: RANKING_FILE_VERSION,
    timestamp: "2024-05-14T10:00:00.123Z",
    mirrors: [{ url: "https://mirror.moson.org/arch/", latencyMs: 80, countryCode: "DE", score: null }],
  });
});

Deno.test("rankingAgeMs() is the time since the timestamp, infinite for a timestamp in the future", () => {
  const ranking = { version: 4, timestamp: "2024-05-14T10:00:00.000Z", mirrors: [] };
  const at = Date.parse("2024-05-14T10:00:00.000Z");
  assert.equal(rankingAgeMs(ranking, at + 5000), 5000);
  assert.equal(rankingAgeMs(ranking, at - 1), Infinity);
});

Deno.test("writeMirrorList() writes flexo's plain list and readMirrorListSync() reads it back", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "state", "mirrorlist");
    assert.equal(readMirrorListSync(path), undefined, "a missing file is no list");
    const urls = ["https://a.example/archlinux/", "https://b.example/"];
    await writeMirrorList(path, urls);
    assert.equal(await Deno.readTextFile(path), urls.join("\n"), "no newline at the end, as flexo writes it");
    assert.deepEqual(readMirrorListSync(path), urls);
    await Deno.writeTextFile(
      path,
      "# best first\nServer = https://c.example/$repo/os/$arch\n\nftp://d.example/\n",
    );
    const warnings: string[] = [];
    assert.deepEqual(readMirrorListSync(path, { log: { warn: (m) => warnings.push(m) } }), [
      "https://c.example/",
    ]);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /not http\(s\) URLs \(first: "ftp:\/\/d\.example\/"\)/);
  });
});
