import assert from "node:assert/strict";
import type { MirrorsAutoConfig } from "../../src/config/config_schema.ts";
import {
  exclusionReason,
  fetchMirrorStatus,
  filterMirrors,
  type MirrorStatusEntry,
  MirrorStatusError,
  parseMirrorStatus,
} from "../../src/mirrors/mirror_status.ts";
import { mirrorsAutoSettings, refusingUrl } from "../helpers/mirror_fixtures.ts";

const FIXTURE = JSON.parse(
  await Deno.readTextFile(new URL("../fixtures/mirror_status.json", import.meta.url)),
);

/** Settings that let every complete, up-to-date http(s) mirror with a score through. */
function permissive(overrides: Partial<MirrorsAutoConfig> = {}): MirrorsAutoConfig {
  return mirrorsAutoSettings({
    ipv4: false,
    max_score: 100,
    timeout: 350,
    min_completion_pct: 0,
    max_delay_secs: 1_000_000,
    ...overrides,
  });
}

function fixtureEntries(): MirrorStatusEntry[] {
  return parseMirrorStatus(FIXTURE, "fixture").entries;
}

function urlsAfter(overrides: Partial<MirrorsAutoConfig>): string[] {
  return filterMirrors(fixtureEntries(), permissive(overrides)).map((e) => e.url);
}

const ALL_HTTP = [
  "https://geo.mirror.pkgbuild.com/",
  "https://mirror.moson.org/arch/",
  "http://ftp.halifax.rwth-aachen.de/archlinux/",
  "https://ftp.halifax.rwth-aachen.de/archlinux/",
  "https://v6only.mirror.jp/archlinux/",
  "https://mirrors.kernel.org/archlinux/",
  "https://mirror.aarnet.edu.au/pub/archlinux/",
  "https://archlinux.mirror.flaky.nl/",
  "https://mirror.lagging.fr/archlinux/",
];

Deno.test("parseMirrorStatus() reads every entry of the status JSON with its fields", () => {
  const { entries, skipped } = parseMirrorStatus(FIXTURE, "fixture");
  assert.equal(skipped, 0);
  assert.equal(entries.length, 12);
  const unchecked = entries.find((e) => e.url === "https://archlinux.thaller.ws/");
  assert.deepEqual(unchecked, {
    url: "https://archlinux.thaller.ws/",
    protocol: "https",
    country_code: "DE",
    score: null,
    completion_pct: 0,
    delay: null,
    last_sync: null,
    ipv4: true,
    ipv6: true,
    active: true,
    duration_avg: null,
  });
});

Deno.test("parseMirrorStatus() adds the trailing slash, drops duplicates and skips malformed entries", () => {
  const { entries, skipped } = parseMirrorStatus({
    urls: [
      { url: "http://a.example/arch", protocol: "http", score: 1 },
      { url: "http://a.example/arch/", protocol: "http", score: 2 },
      { url: 42, protocol: "http" },
      { protocol: "https" },
    ],
  }, "test");
  assert.deepEqual(entries.map((e) => [e.url, e.score]), [["http://a.example/arch/", 1]]);
  assert.equal(skipped, 2);
});

Deno.test("parseMirrorStatus() skips hostile URLs: another scheme than their protocol, credentials, a query or fragment, loopback from a remote source", () => {
  const hostile = [
    { url: "file:///var/cache/flexo/", protocol: "https" },
    { url: "javascript:alert(1)//", protocol: "http" },
    { url: "ftp://ftp.example/arch/", protocol: "http" },
    { url: "https://user:secret@mirror.example/arch/", protocol: "https" },
    { url: "https://mirror.example/arch/?x=", protocol: "https" },
    { url: "https://mirror.example/arch/#", protocol: "https" },
    { url: "http://127.0.0.1:6379/", protocol: "http" },
    { url: "http://localhost/arch/", protocol: "http" },
    { url: "http://[::1]:8080/", protocol: "http" },
  ].map((entry) => ({ ...entry, score: 0.1 }));
  const good = { url: "https://mirror.example/arch/", protocol: "https", score: 1 };
  const rsync = { url: "rsync://mirror.example/arch/", protocol: "rsync", score: 1 };
  const { entries, skipped } = parseMirrorStatus(
    { urls: [...hostile, good, rsync] },
    "https://archlinux.org/mirrors/status/json/",
  );
  assert.deepEqual(entries.map((e) => e.url), [good.url, rsync.url]);
  assert.equal(skipped, hostile.length);
  // A status JSON served from this host may list mirrors on this host (a local test setup).
  const local = parseMirrorStatus({ urls: [hostile[6]] }, "http://127.0.0.1:1/status.json");
  assert.deepEqual(local.entries.map((e) => e.url), ["http://127.0.0.1:6379/"]);
});

Deno.test("parseMirrorStatus() names the source and the problem when the document is wrong", () => {
  assert.throws(
    () => parseMirrorStatus({ mirrors: [] }, "http://127.0.0.1:1/status.json"),
    (e: unknown) =>
      e instanceof MirrorStatusError && e.message.includes("http://127.0.0.1:1/status.json") &&
      e.message.includes("urls"),
  );
  assert.throws(
    () => parseMirrorStatus({ urls: [{ url: 1 }] }, "somewhere"),
    (e: unknown) =>
      e instanceof MirrorStatusError && /somewhere.*no valid mirror entry.*urls\[0\]/.test(e.message),
  );
});

Deno.test("filterMirrors() keeps only http and https mirrors, sorted by score", () => {
  assert.deepEqual(urlsAfter({}), ALL_HTTP);
});

Deno.test("filterMirrors() applies https_required", () => {
  assert.deepEqual(urlsAfter({ https_required: true }), ALL_HTTP.filter((u) => u.startsWith("https://")));
});

Deno.test("filterMirrors() applies ipv4 and ipv6", () => {
  assert.deepEqual(
    urlsAfter({ ipv4: true }),
    ALL_HTTP.filter((u) => u !== "https://v6only.mirror.jp/archlinux/"),
  );
  assert.deepEqual(urlsAfter({ ipv6: true }), [
    "https://geo.mirror.pkgbuild.com/",
    "https://mirror.moson.org/arch/",
    "http://ftp.halifax.rwth-aachen.de/archlinux/",
    "https://ftp.halifax.rwth-aachen.de/archlinux/",
    "https://v6only.mirror.jp/archlinux/",
    "https://mirror.aarnet.edu.au/pub/archlinux/",
  ]);
});

Deno.test("filterMirrors() applies max_score and excludes mirrors without a score", () => {
  assert.deepEqual(urlsAfter({ max_score: 1.25 }), ALL_HTTP.slice(0, 3));
  const withoutScore = urlsAfter({ max_score: Infinity, min_completion_pct: 0, max_delay_secs: Infinity });
  assert.ok(!withoutScore.includes("https://archlinux.thaller.ws/"));
});

Deno.test("filterMirrors() applies allowed_countries case-insensitively; empty means all", () => {
  assert.deepEqual(urlsAfter({ allowed_countries: ["de", "Au"] }), [
    "https://mirror.moson.org/arch/",
    "http://ftp.halifax.rwth-aachen.de/archlinux/",
    "https://ftp.halifax.rwth-aachen.de/archlinux/",
    "https://mirror.aarnet.edu.au/pub/archlinux/",
  ]);
  assert.deepEqual(urlsAfter({ allowed_countries: [] }), ALL_HTTP);
});

Deno.test("filterMirrors() applies mirrors_blacklist by URL prefix or host", () => {
  const byHost = urlsAfter({ mirrors_blacklist: ["FTP.halifax.rwth-aachen.de"] });
  assert.deepEqual(byHost, ALL_HTTP.filter((u) => !u.includes("rwth-aachen")));
  const byPrefix = urlsAfter({ mirrors_blacklist: ["https://ftp.halifax.rwth-aachen.de/archlinux"] });
  assert.deepEqual(byPrefix, ALL_HTTP.filter((u) => u !== "https://ftp.halifax.rwth-aachen.de/archlinux/"));
  // A prefix ends at a path segment, and a host must match completely.
  assert.deepEqual(urlsAfter({ mirrors_blacklist: ["https://mirror.moson.org/ar", "moson.org"] }), ALL_HTTP);
});

Deno.test("filterMirrors() drops inactive, incomplete and lagging mirrors", () => {
  assert.ok(!urlsAfter({}).includes("https://mirror.retired.se/archlinux/"), "inactive");
  assert.ok(!urlsAfter({}).includes("https://archlinux.thaller.ws/"), "never synced: delay unknown");
  assert.deepEqual(urlsAfter({ min_completion_pct: 0.9 }), ALL_HTTP.filter((u) => !u.includes("flaky")));
  assert.deepEqual(urlsAfter({ max_delay_secs: 3600 }), [
    "https://geo.mirror.pkgbuild.com/",
    "https://mirror.moson.org/arch/",
    "http://ftp.halifax.rwth-aachen.de/archlinux/",
    "https://ftp.halifax.rwth-aachen.de/archlinux/",
    "https://v6only.mirror.jp/archlinux/",
    "https://mirror.aarnet.edu.au/pub/archlinux/",
  ]);
});

Deno.test("exclusionReason() says why a mirror does not qualify", () => {
  const byUrl = new Map(fixtureEntries().map((e) => [e.url, e]));
  const reason = (url: string, overrides: Partial<MirrorsAutoConfig> = {}) =>
    exclusionReason(byUrl.get(url)!, permissive(overrides));
  assert.equal(reason("rsync://ftp.halifax.rwth-aachen.de/archlinux/"), "protocol rsync");
  assert.equal(reason("https://mirror.retired.se/archlinux/"), "inactive");
  assert.equal(reason("https://mirror.moson.org/arch/"), undefined);
  assert.equal(
    reason("http://ftp.halifax.rwth-aachen.de/archlinux/", { https_required: true }),
    "not https (https_required)",
  );
  assert.match(
    reason("https://mirrors.kernel.org/archlinux/", { max_score: 1 })!,
    /score 1.8199 above max_score 1/,
  );
  assert.match(
    reason("https://mirror.retired.se/archlinux/", { allowed_countries: ["DE"] })!,
    /country "SE"/,
  );
  assert.match(reason("https://archlinux.thaller.ws/")!, /no score/);
  assert.match(reason("https://mirror.lagging.fr/archlinux/", { max_delay_secs: 86_400 })!, /lags 231574 s/);
  assert.match(
    reason("https://archlinux.mirror.flaky.nl/", { min_completion_pct: 0.9 })!,
    /completion_pct 0.625/,
  );
});

Deno.test('filterMirrors() shuffles with the injected random for mirrors_random_or_sort = "random"', () => {
  const settings = permissive({ mirrors_random_or_sort: "random" });
  // random() = 0 always swaps with the first element: a rotation of the input order.
  const shuffled = filterMirrors(fixtureEntries(), settings, { random: () => 0 }).map((e) => e.url);
  assert.deepEqual([...shuffled].sort(), [...ALL_HTTP].sort());
  assert.notDeepEqual(shuffled, ALL_HTTP);
  const again = filterMirrors(fixtureEntries(), settings, { random: () => 0 }).map((e) => e.url);
  assert.deepEqual(again, shuffled);
  const other = filterMirrors(fixtureEntries(), settings, { random: () => 0.99 }).map((e) => e.url);
  assert.notDeepEqual(other, shuffled);
});

/** A local HTTP server answering every request with `handler`. */
function serve(handler: (req: Request) => Response | Promise<Response>) {
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    requests.push(new URL(req.url).pathname);
    return handler(req);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/status/json/`,
    requests,
    close: () => server.shutdown(),
  };
}

Deno.test("fetchMirrorStatus() returns the entries from the endpoint", async () => {
  const server = serve(() => Response.json(FIXTURE));
  try {
    const entries = await fetchMirrorStatus(permissive({ mirrors_status_json_endpoint: server.url }), {
      fetch,
    });
    assert.equal(entries.length, 12);
    assert.deepEqual(server.requests, ["/status/json/"]);
  } finally {
    await server.close();
  }
});

Deno.test("fetchMirrorStatus() falls back to the fallbacks in order when the endpoint fails", async () => {
  const broken = serve(() => new Response("oops", { status: 503 }));
  const notJson = serve(() => new Response("<html>maintenance</html>"));
  const good = serve(() => Response.json({ urls: [{ url: "http://127.0.0.1:1/", protocol: "http" }] }));
  const warnings: string[] = [];
  try {
    const entries = await fetchMirrorStatus(
      permissive({
        mirrors_status_json_endpoint: refusingUrl("/status/json/"),
        mirrors_status_json_endpoint_fallbacks: [broken.url, notJson.url, good.url],
      }),
      { fetch, log: { info() {}, warn: (m) => warnings.push(m) } },
    );
    assert.deepEqual(entries.map((e) => e.url), ["http://127.0.0.1:1/"]);
    assert.equal(warnings.length, 3);
    assert.match(warnings[1], /503/);
    assert.match(warnings[2], new RegExp(`${notJson.url}.*not valid JSON`));
  } finally {
    await Promise.all([broken.close(), notJson.close(), good.close()]);
  }
});

Deno.test("fetchMirrorStatus() names every endpoint and its problem when all fail", async () => {
  const wrongShape = serve(() => Response.json({ mirrors: [] }));
  const refusing = refusingUrl("/status/json/");
  try {
    await assert.rejects(
      fetchMirrorStatus(
        permissive({
          mirrors_status_json_endpoint: refusing,
          mirrors_status_json_endpoint_fallbacks: [wrongShape.url],
        }),
        { fetch },
      ),
      (e: unknown) =>
        e instanceof MirrorStatusError && e.message.includes(refusing) &&
        e.message.includes(wrongShape.url) &&
        e.message.includes('"urls"'),
    );
  } finally {
    await wrongShape.close();
  }
});

Deno.test("fetchMirrorStatus() gives up on an endpoint that does not answer in time", async () => {
  let release = () => {};
  const hanging = serve(() =>
    new Promise<Response>((resolve) => release = () => resolve(new Response("{}")))
  );
  const good = serve(() => Response.json({ urls: [] }));
  try {
    const started = performance.now();
    const entries = await fetchMirrorStatus(
      permissive({
        mirrors_status_json_endpoint: hanging.url,
        mirrors_status_json_endpoint_fallbacks: [good.url],
      }),
      { fetch, timeoutMs: 100 },
    );
    assert.deepEqual(entries, []);
    // 100 ms of timeout: well within 10 s, where an endpoint that is not given up on hangs until the end.
    assert.ok(performance.now() - started < 10_000);
  } finally {
    release();
    await Promise.all([hanging.close(), good.close()]);
  }
});

Deno.test("fetchMirrorStatus() stops reading a status JSON far larger than any real one, and says so", async () => {
  // The real document is about half a MiB; this endpoint (a wrong URL, say an ISO image) sends 256 MiB.
  const chunk = new Uint8Array(1024 * 1024).fill(0x20);
  let sent = 0;
  const huge: typeof fetch = () =>
    Promise.resolve(
      new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sent >= 256 * chunk.byteLength) return controller.close();
            sent += chunk.byteLength;
            controller.enqueue(chunk);
          },
        }),
      ),
    );
  await assert.rejects(
    fetchMirrorStatus(permissive({ mirrors_status_json_endpoint: "https://status.test/json/" }), {
      fetch: huge,
    }),
    (e: unknown) => e instanceof MirrorStatusError && /larger than \d+ MiB/.test(e.message),
  );
  assert.ok(sent <= 32 * chunk.byteLength, `read ${sent / chunk.byteLength} MiB of it`);
});
