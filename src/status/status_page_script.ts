/// <reference lib="dom" />
/**
 * The status page's script, run in the browser: it fills the page from the report embedded in it, then asks
 * `GET /status` again every few seconds and fills it anew, without reloading. It only ever sets text
 * (`textContent`, text nodes), never HTML.
 *
 * Why a TypeScript function and not a string or a file: the function is type-checked with the rest of the
 * project (the DOM types come from the reference above; the report's from status_report.ts), and the page
 * embeds its source text, `statusPageScript.toString()`. Deno strips the types when it loads this module,
 * so that text is JavaScript, under `deno run`, `deno test` and in a `deno compile` binary alike (which
 * holds the modules already transpiled); nothing is bundled and nothing is read from disk at run time.
 * The price: the function must be self-contained. It runs in the browser, far from this module, so its body
 * may use only its parameters, its own inner declarations and the browser's globals, never an import or
 * anything else declared in this module (types are fine: they are gone before it runs).
 * tests/status/status_page_script_test.ts checks that the text parses as JavaScript; the browser test runs it.
 *
 * A lib reference is global in TypeScript: every check of a program that imports this module (main.ts's too)
 * knows the DOM's names. The checker will not stop server code from naming `document`; reviewers must.
 *
 * @module
 */

import type { MirrorStats } from "../mirrors/mirrors.ts";
import type { DownloadReport, StatusReport } from "./status_report.ts";
import type { StatusNotice, StatusNotices } from "./status_notices.ts";
import type { TrafficSnapshot } from "./traffic_history.ts";

/**
 * The page's script: call it in the browser, as `(${statusPageScript})(2000)`, in a page that has the
 * elements of status_page.ts (and the first report as JSON in `#initial-status`). Self-contained: see the
 * module's notes.
 *
 * @param refreshIntervalMs How often to ask for a new report, unless the page's URL says `?refresh=MS`.
 * @param notices What to tell the operator of a report, and where (status_notices.ts's `statusNotices`,
 *   embedded beside this function).
 */
export function statusPageScript(
  refreshIntervalMs: number,
  notices: (s: StatusReport) => StatusNotices,
): void {
  "use strict";
  // "?refresh=MS" asks for another interval (at least a quarter of a second).
  const REFRESH_MS = Math.max(
    250,
    Number(new URLSearchParams(location.search).get("refresh")) || refreshIntervalMs,
  );
  let refreshes = 0;
  let lastOk = Date.now();

  type Child = Node | string | null | undefined;

  function $(id: string): HTMLElement {
    const node = document.getElementById(id);
    if (!node) throw new Error(`the status page has no element #${id}: the page and its script disagree`);
    return node;
  }

  function el(tag: string, props: Record<string, string>, ...children: Child[]): HTMLElement {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function bytes(n: number | null | undefined): string {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(n) : n.toFixed(n >= 100 ? 0 : 1)) + " " + units[i];
  }
  const speed = (bps: number | null | undefined): string =>
    (bps === null || bps === undefined) ? "—" : bytes(Math.round(bps)) + "/s";
  const ms = (v: number | null | undefined): string =>
    (v === null || v === undefined) ? "—" : Math.round(v) + " ms";
  const percent = (x: number): string => (x * 100).toFixed(x >= 0.995 || x === 0 ? 0 : 1) + " %";
  const count = (n: number): string => Number(n).toLocaleString("en");
  const plural = (n: number, one: string, many: string): string => count(n) + " " + (n === 1 ? one : many);

  function duration(seconds: number): string {
    seconds = Math.max(0, Math.round(seconds));
    const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    if (d > 0) return d + " d " + h + " h";
    if (h > 0) return h + " h " + m + " min";
    if (m > 0) return m + " min " + s + " s";
    return s + " s";
  }

  function setText(id: string, text: string): void {
    $(id).textContent = text;
  }

  function fill(tbody: HTMLElement, rows: HTMLElement[], columns: number, emptyText: string): void {
    tbody.replaceChildren();
    if (rows.length === 0) {
      tbody.append(el("tr", {}, el("td", { class: "empty", colspan: String(columns) }, emptyText)));
      return;
    }
    for (const row of rows) tbody.append(row);
  }

  function downloadRow(d: DownloadReport, now: number): HTMLElement {
    const total = d.total !== null && d.total > 0 ? d.total : null;
    const share = total !== null ? Math.min(1, d.written / total) : 0;
    // Set through the style object: the page's Content-Security-Policy refuses style attributes.
    const fillSpan = el("span", {});
    fillSpan.style.width = (share * 100).toFixed(1) + "%";
    const bar = el("div", {
      class: total !== null ? "bar" : "bar unknown",
      role: "progressbar",
      "aria-valuemin": "0",
      "aria-valuemax": total !== null ? String(total) : "",
      "aria-valuenow": String(d.written),
    }, fillSpan);
    const text = total !== null
      ? bytes(d.written) + " of " + bytes(total) + " · " + percent(share)
      : bytes(d.written) + (d.state === "starting" ? " · waiting for a mirror" : " · length unknown");
    return el(
      "tr",
      { "data-path": d.path },
      el("td", { class: "path" }, d.path),
      el("td", {}, bar, el("div", { class: "progress-text" }, text)),
      el("td", { class: "num" }, speed(d.bytesPerSecond)),
      el("td", { class: "url" }, d.mirror || "—"),
      el("td", { class: "num" }, duration((now - d.startedAt) / 1000)),
    );
  }

  function mirrorRow(m: MirrorStats, now: number): HTMLElement {
    let health;
    if (m.penalty >= 0.5) health = el("span", { class: "tag bad" }, "penalised");
    else if (isFailing(m, now)) health = el("span", { class: "tag bad" }, "failing");
    else if (m.failures > 0) health = el("span", { class: "tag warn" }, "recovered");
    else health = el("span", { class: "tag ok" }, "ok");
    const lastError = m.lastError
      ? el(
        "div",
        { class: "error-text" },
        duration((now - m.lastError.at) / 1000) + " ago: " + m.lastError.message,
      )
      : null;
    return el(
      "tr",
      {},
      el("td", { class: "num" }, String(m.rank + 1)),
      el("td", { class: "url" }, m.url, lastError),
      el("td", { class: "num" }, ms(m.latencyMs)),
      el("td", { class: "num" }, ms(m.ttfbMs)),
      el("td", { class: "num" }, speed(m.throughputBps)),
      el("td", { class: "num" }, bytes(m.bytes)),
      el("td", { class: "num" }, count(m.successes)),
      el("td", { class: "num" }, count(m.failures)),
      el("td", { class: "num" }, count(m.inFlight)),
      el("td", {}, health),
    );
  }

  /** Failed within the last 10 minutes, and no transfer completed since. */
  function isFailing(m: MirrorStats, now: number): boolean {
    return m.lastError !== undefined && now - m.lastError.at < 10 * 60_000 &&
      (m.lastSuccessAt === undefined || m.lastSuccessAt < m.lastError.at);
  }

  function showOutage(s: StatusReport): void {
    const banner = $("outage");
    const texts: string[] = [];
    const stale = s.servingCachedDatabases;
    if (stale !== null) {
      texts.push(
        "Mirrors unreachable since " + new Date(stale.since).toLocaleString("en-GB") + " (" +
          duration((s.now - stale.since) / 1000) + " ago); serving cached databases: clients get the last " +
          "good copy until a mirror answers again.",
      );
    }
    if (s.mirrors.ranking.length > 0 && s.mirrors.ranking.every((m) => isFailing(m, s.now))) {
      texts.push(
        "Every mirror failed recently and none delivered since: clients get errors for files not in the " +
          "cache. Check this machine's network and DNS; each mirror's last error is below.",
      );
    }
    banner.hidden = texts.length === 0;
    banner.textContent = texts.join(" ");
  }

  /** A list of notices (class `notices`), each `li[data-key]` with its text and its hint. */
  function noticeList(items: StatusNotice[], props: Record<string, string>): HTMLElement {
    const list = el("ul", { ...props, class: "notices" });
    list.replaceChildren(
      ...items.map((n) =>
        el("li", { "data-key": n.key }, n.text + ". ", el("span", { class: "hint" }, n.hint))
      ),
    );
    return list;
  }

  /** The notices of a pool below its mirror table: none when it has nothing to tell. */
  const poolNotices = (items: StatusNotice[] | undefined, pool: string): HTMLElement | null =>
    items === undefined || items.length === 0 ? null : noticeList(items, { "data-pool": pool });

  function mirrorTable(ranking: MirrorStats[], now: number): HTMLElement {
    const columns: [string, boolean][] = [
      ["#", true],
      ["Mirror", false],
      ["Latency", true],
      ["TTFB", true],
      ["Throughput", true],
      ["Received", true],
      ["Transfers", true],
      ["Failures", true],
      ["Now", true],
      ["Health", false],
    ];
    const head = el("tr", {}, ...columns.map(([name, num]) => el("th", num ? { class: "num" } : {}, name)));
    const body = el("tbody", {});
    fill(body, ranking.map((m) => mirrorRow(m, now)), 10, "No mirrors configured.");
    return el("table", {}, el("thead", {}, head), body);
  }

  /** The prefetch table: each row carries its `data-key`; the files of the last run are listed below it. */
  function showPrefetch(s: StatusReport): void {
    const p = s.prefetch;
    const rows: [string, string, string][] = [];
    if (p !== null) {
      rows.push(
        ["state", "State", !p.enabled ? "off (runs only when asked)" : p.running ? "running" : "on"],
        [
          "last-run",
          "Last run ended",
          p.lastRunAt === undefined ? "none yet" : duration((s.now - p.lastRunAt) / 1000) + " ago",
        ],
        [
          "next-run",
          "Next run",
          p.nextRunAt !== undefined
            ? "in " + duration((p.nextRunAt - s.now) / 1000)
            : p.running
            ? "after this one"
            : "not scheduled",
        ],
        ["runs", "Runs", count(p.runs)],
        ["files", "Files fetched", count(p.files)],
        ["bytes", "Bytes fetched", bytes(p.bytes)],
      );
      if (p.lastError) {
        rows.push([
          "last-error",
          "Last failed run",
          duration((s.now - p.lastError.at) / 1000) + " ago: " + p.lastError.message,
        ]);
      }
    }
    fill(
      $("prefetch"),
      rows.map(([key, name, v]) =>
        el("tr", { "data-key": key }, el("td", {}, name), el("td", { class: "num" }, v))
      ),
      2,
      "Prefetch is not reported.",
    );
    const files = p === null ? [] : p.lastFetched.map((path) => el("li", {}, path));
    if (p !== null && p.lastRunAt !== undefined) {
      const shown = p.lastFetched.length, fetched = p.lastFetchedCount;
      files.unshift(
        el(
          "li",
          {},
          fetched === 0
            ? "The last run fetched nothing."
            : fetched > shown
            ? "Last run fetched " + count(fetched) + " files, the first " + count(shown) + ":"
            : "Last run fetched:",
        ),
      );
    }
    $("prefetch-files").replaceChildren(...files);
  }

  /**
   * The chart of the last 24 hours as inline SVG (no external assets: the page's policy allows none): per
   * bucket a bar of bytes from the cache with bytes from upstream stacked on it, and a line of requests per
   * minute on a scale of its own.
   */
  function trafficChart(t: TrafficSnapshot): Element {
    const SVG = "http://www.w3.org/2000/svg";
    const svg = (tag: string, attrs: Record<string, string>): Element => {
      const node = document.createElementNS(SVG, tag);
      for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
      return node;
    };
    const n = t.requests.length;
    const width = n * 3, height = 100;
    const perMinute = t.requests.map((r) => r / (t.bucketMs / 60_000));
    const maxBytes = Math.max(1, ...t.fromCacheBytes.map((c, i) => c + t.fromUpstreamBytes[i]));
    const maxRate = Math.max(1, ...perMinute);
    const chart = svg("svg", {
      viewBox: "0 0 " + width + " " + height,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": "bytes served from the cache and from upstream, and requests per minute, last 24 hours",
      "data-buckets": String(n),
    });
    const points: string[] = [];
    for (let i = 0; i < n; i++) {
      const cache = t.fromCacheBytes[i] / maxBytes * height;
      const upstream = t.fromUpstreamBytes[i] / maxBytes * height;
      const x = String(i * 3);
      if (cache > 0) {
        chart.append(svg("rect", {
          class: "cache",
          x,
          y: String(height - cache),
          width: "2.4",
          height: String(cache),
          "data-i": String(i),
        }));
      }
      if (upstream > 0) {
        chart.append(svg("rect", {
          class: "upstream",
          x,
          y: String(height - cache - upstream),
          width: "2.4",
          height: String(upstream),
          "data-i": String(i),
        }));
      }
      points.push((i * 3 + 1.2) + "," + (height - perMinute[i] / maxRate * (height - 2)).toFixed(1));
    }
    chart.append(svg("polyline", { class: "rate", points: points.join(" ") }));
    return chart;
  }

  function renderTraffic(t: TrafficSnapshot): void {
    $("traffic").replaceChildren(trafficChart(t));
    const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
    const peak = Math.max(0, ...t.requests) / (t.bucketMs / 60_000);
    setText(
      "traffic-note",
      bytes(sum(t.fromCacheBytes)) + " from the cache, " + bytes(sum(t.fromUpstreamBytes)) +
        " from upstream, " + plural(sum(t.requests), "request", "requests") + "; peak " +
        (peak >= 10 ? Math.round(peak) : peak.toFixed(1)) + " requests/min (" +
        Math.round(t.bucketMs / 60_000) + "-minute bars)",
    );
  }

  function render(s: StatusReport): void {
    setText("version", s.version);
    setText("node-name", s.node.name);
    setText("peer-hits", plural(s.node.peerHits, "file", "files"));
    setText(
      "peer-note",
      s.node.cachePeers.length === 0
        ? "no cache_peers configured"
        : "misses found on " + plural(s.node.cachePeers.length, "peer", "peers") +
          ", not fetched from mirrors",
    );
    const told = notices(s);
    $("peer-notices").replaceWith(noticeList(told.peers, { id: "peer-notices" }));
    setText("uptime", duration(s.uptimeSeconds));
    const c = s.cache;
    setText("cache-size", c.bytes === null ? "—" : bytes(c.bytes));
    setText(
      "cache-files",
      c.files === null
        ? "not tracked"
        : plural(c.files, "file", "files") + (c.complete ? "" : " (still counting…)"),
    );
    setText("cache-dir", c.directory);
    const lookups = s.requests.lookups;
    setText("hit-ratio", lookups === 0 ? "—" : percent(s.requests.hitRatio));
    setText(
      "hit-note",
      plural(lookups, "file request", "file requests") + ", " +
        plural(s.requests.total, "request", "requests") + " in all" +
        (s.requests.head > 0 ? " (" + count(s.requests.head) + " HEAD, not in the ratio)" : ""),
    );
    setText("from-cache", bytes(s.served.fromCacheBytes));
    setText("from-upstream", bytes(s.served.fromUpstreamBytes));
    const served = s.served.fromCacheBytes + s.served.fromUpstreamBytes;
    setText(
      "saved-note",
      served === 0
        ? "nothing served yet"
        : percent(s.served.fromCacheBytes / served) + " of the bytes served did not touch the internet",
    );
    setText("download-count", String(s.downloads.length));
    renderTraffic(s.traffic);

    fill($("downloads"), s.downloads.map((d) => downloadRow(d, s.now)), 5, "No downloads in progress.");
    setText("mirror-source", "ranking: " + s.mirrors.source);
    showOutage(s);
    const official = poolNotices(told.pools.official, "official");
    $("mirrors").replaceChildren(mirrorTable(s.mirrors.ranking, s.now), ...(official ? [official] : []));
    $("custom-repos").replaceChildren(
      ...s.customRepos.map((r) =>
        el(
          "section",
          {},
          el("h2", {}, "custom_repo " + r.name),
          mirrorTable(r.ranking, s.now),
          poolNotices(told.pools["custom_repo/" + r.name], "custom_repo/" + r.name),
        )
      ),
    );

    const results = Object.entries(s.requests.byResult).sort((a, b) => b[1] - a[1]);
    fill(
      $("results"),
      results.map(([name, n]) => el("tr", {}, el("td", {}, name), el("td", { class: "num" }, count(n)))),
      2,
      "No requests yet.",
    );
    $("request-notices").replaceWith(noticeList(told.requests, { id: "request-notices" }));
    const housekeeping: [string, string][] = [
      ["Files removed by retention", count(s.retention.removals)],
      ["Space freed by retention", bytes(s.retention.bytesFreed)],
      ["Downloads rejected (integrity)", count(s.integrityRejections)],
    ];
    fill(
      $("housekeeping"),
      housekeeping.map(([name, v]) => el("tr", {}, el("td", {}, name), el("td", { class: "num" }, v))),
      2,
      "",
    );

    showPrefetch(s);

    const errors = s.recentErrors.map((e) =>
      el(
        "li",
        {},
        el("time", { datetime: new Date(e.at).toISOString() }, new Date(e.at).toLocaleString()),
        e.message,
      )
    );
    if (errors.length === 0) errors.push(el("li", { class: "empty" }, "No errors since start."));
    $("errors").replaceChildren(...errors);
  }

  function showLiveness(): void {
    const age = (Date.now() - lastOk) / 1000;
    const live = $("live");
    live.classList.toggle("stale", age > REFRESH_MS / 1000 * 3);
    live.textContent = age > REFRESH_MS / 1000 * 3
      ? "no answer for " + duration(age) + ", retrying"
      : "live, updated " + (age < 1 ? "just now" : duration(age) + " ago");
  }

  async function refresh(): Promise<void> {
    try {
      const response = await fetch("status", { cache: "no-store", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      lastOk = Date.now();
      refreshes++;
      document.body.dataset.refreshes = String(refreshes);
    } catch (error) {
      console.warn("status refresh failed:", error);
    } finally {
      showLiveness();
      setTimeout(refresh, REFRESH_MS);
    }
  }

  render(JSON.parse($("initial-status").textContent ?? "null"));
  document.body.dataset.refreshes = "0";
  showLiveness();
  setInterval(showLiveness, 1000);
  setTimeout(refresh, REFRESH_MS);
}
