/**
 * The status page: one HTML document with its style and script inline (no external assets), filled from the
 * embedded first report and then from `GET /status` every two seconds without reloading.
 *
 * Everything shown is set as text (never as HTML): mirror URLs, file names and error messages come from
 * configuration and from clients' requests.
 *
 * @module
 */

import type { StatusReport } from "./status_report.ts";

/** How often the page asks for a new report, in milliseconds. */
export const REFRESH_INTERVAL_MS = 2_000;

const STYLE = `
:root { color-scheme: light dark; --fg: #1f2328; --muted: #656d76; --bg: #ffffff; --panel: #f6f8fa;
  --line: #d0d7de; --accent: #0969da; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --track: #e6e9ed; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #8d96a0; --bg: #0d1117; --panel: #161b22; --line: #30363d;
    --accent: #4493f8; --ok: #3fb950; --warn: #d29922; --bad: #f85149; --track: #30363d; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 24px 40px; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 16px; margin-bottom: 18px; }
h1 { font-size: 22px; margin: 0; }
h1 small { font-size: 14px; font-weight: normal; color: var(--muted); }
h2 { font-size: 16px; margin: 26px 0 8px; }
h2 small { font-weight: normal; color: var(--muted); }
#live { margin-left: auto; color: var(--muted); }
#live::before { content: ""; display: inline-block; width: 8px; height: 8px; border-radius: 50%;
  background: var(--ok); margin-right: 6px; vertical-align: 1px; }
#live.stale::before { background: var(--bad); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 24px; font-weight: 600; margin: 2px 0; font-variant-numeric: tabular-nums; }
.card .note { color: var(--muted); font-size: 12px; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.path { word-break: break-all; }
td.url { word-break: break-all; min-width: 180px; }
.empty { color: var(--muted); padding: 8px 0; }
.bar { position: relative; height: 10px; background: var(--track); border-radius: 5px; overflow: hidden;
  min-width: 160px; }
.bar > span { position: absolute; inset: 0 auto 0 0; background: var(--accent); border-radius: 5px;
  transition: width .4s ease; }
.bar.unknown > span { width: 30% !important; animation: slide 1.2s linear infinite; }
@keyframes slide { from { left: -30%; } to { left: 100%; } }
.progress-text { color: var(--muted); font-size: 12px; margin-top: 2px; }
.tag { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 12px; border: 1px solid; }
.tag.ok { color: var(--ok); } .tag.warn { color: var(--warn); } .tag.bad { color: var(--bad); }
.error-text { color: var(--muted); font-size: 12px; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 0 28px; }
ol#errors { list-style: none; padding: 0; margin: 0; }
ol#errors li { padding: 6px 0; border-bottom: 1px solid var(--line); word-break: break-word; }
ol#errors time { color: var(--muted); margin-right: 10px; font-variant-numeric: tabular-nums; }
footer { margin-top: 30px; color: var(--muted); font-size: 12px; }
a { color: var(--accent); }
`;

// Plain browser JavaScript (no build step). It only ever sets textContent, never innerHTML.
const SCRIPT = `
"use strict";
// "?refresh=MS" asks for another interval (at least a quarter of a second).
const REFRESH_MS = Math.max(250,
  Number(new URLSearchParams(location.search).get("refresh")) || ${REFRESH_INTERVAL_MS});
const $ = (id) => document.getElementById(id);
let refreshes = 0;
let lastOk = Date.now();

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(n >= 100 ? 0 : 1)) + " " + units[i];
}
const speed = (bps) => (bps === null || bps === undefined) ? "—" : bytes(Math.round(bps)) + "/s";
const ms = (v) => (v === null || v === undefined) ? "—" : Math.round(v) + " ms";
const percent = (x) => (x * 100).toFixed(x >= 0.995 || x === 0 ? 0 : 1) + " %";
const count = (n) => Number(n).toLocaleString("en");
const plural = (n, one, many) => count(n) + " " + (n === 1 ? one : many);

function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
  const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
  if (d > 0) return d + " d " + h + " h";
  if (h > 0) return h + " h " + m + " min";
  if (m > 0) return m + " min " + s + " s";
  return s + " s";
}

function setText(id, text) { $(id).textContent = text; }

function fill(tbody, rows, columns, emptyText) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    tbody.append(el("tr", {}, el("td", { class: "empty", colspan: String(columns) }, emptyText)));
    return;
  }
  for (const row of rows) tbody.append(row);
}

function downloadRow(d, now) {
  const known = d.total !== null && d.total > 0;
  const share = known ? Math.min(1, d.written / d.total) : 0;
  // Set through the style object: the page's Content-Security-Policy refuses style attributes.
  const fillSpan = el("span", {});
  fillSpan.style.width = (share * 100).toFixed(1) + "%";
  const bar = el("div", {
    class: known ? "bar" : "bar unknown", role: "progressbar", "aria-valuemin": "0",
    "aria-valuemax": known ? String(d.total) : "", "aria-valuenow": String(d.written),
  }, fillSpan);
  const text = known
    ? bytes(d.written) + " of " + bytes(d.total) + " · " + percent(share)
    : bytes(d.written) + (d.state === "starting" ? " · waiting for a mirror" : " · length unknown");
  return el("tr", { "data-path": d.path },
    el("td", { class: "path" }, d.path),
    el("td", {}, bar, el("div", { class: "progress-text" }, text)),
    el("td", { class: "num" }, speed(d.bytesPerSecond)),
    el("td", { class: "url" }, d.mirror || "—"),
    el("td", { class: "num" }, duration((now - d.startedAt) / 1000)));
}

function mirrorRow(m, now) {
  let health;
  if (m.penalty >= 0.5) health = el("span", { class: "tag bad" }, "penalised");
  else if (m.failures > 0) health = el("span", { class: "tag warn" }, "recovered");
  else health = el("span", { class: "tag ok" }, "ok");
  const lastError = m.lastError
    ? el("div", { class: "error-text" }, duration((now - m.lastError.at) / 1000) + " ago: " + m.lastError.message)
    : null;
  return el("tr", {},
    el("td", { class: "num" }, String(m.rank + 1)),
    el("td", { class: "url" }, m.url, lastError),
    el("td", { class: "num" }, ms(m.latencyMs)),
    el("td", { class: "num" }, ms(m.ttfbMs)),
    el("td", { class: "num" }, speed(m.throughputBps)),
    el("td", { class: "num" }, bytes(m.bytes)),
    el("td", { class: "num" }, count(m.successes)),
    el("td", { class: "num" }, count(m.failures)),
    el("td", { class: "num" }, count(m.inFlight)),
    el("td", {}, health));
}

function mirrorTable(ranking, now) {
  const head = el("tr", {}, ...[
    ["#", true], ["Mirror", false], ["Latency", true], ["TTFB", true], ["Throughput", true],
    ["Received", true], ["Transfers", true], ["Failures", true], ["Now", true], ["Health", false],
  ].map(([name, num]) => el("th", num ? { class: "num" } : {}, name)));
  const body = el("tbody", {});
  fill(body, ranking.map((m) => mirrorRow(m, now)), 10, "No mirrors configured.");
  return el("table", {}, el("thead", {}, head), body);
}

function render(s) {
  setText("version", s.version);
  setText("uptime", duration(s.uptimeSeconds));
  const c = s.cache;
  setText("cache-size", c.bytes === null ? "—" : bytes(c.bytes));
  setText("cache-files", c.files === null ? "not tracked" : plural(c.files, "file", "files") + (c.complete ? "" : " (still counting…)"));
  setText("cache-dir", c.directory);
  const lookups = ["CACHE HIT", "REVALIDATED", "NOT MODIFIED", "JOINED DOWNLOAD", "CACHE MISS", "UPDATED"]
    .reduce((sum, key) => sum + (s.requests.byResult[key] || 0), 0);
  setText("hit-ratio", lookups === 0 ? "—" : percent(s.requests.hitRatio));
  setText("hit-note", plural(lookups, "file request", "file requests") + ", " +
    plural(s.requests.total, "request", "requests") + " in all");
  setText("from-cache", bytes(s.served.fromCacheBytes));
  setText("from-upstream", bytes(s.served.fromUpstreamBytes));
  const served = s.served.fromCacheBytes + s.served.fromUpstreamBytes;
  setText("saved-note", served === 0 ? "nothing served yet"
    : percent(s.served.fromCacheBytes / served) + " of the bytes served did not touch the internet");
  setText("download-count", String(s.downloads.length));

  fill($("downloads"), s.downloads.map((d) => downloadRow(d, s.now)), 5, "No downloads in progress.");
  setText("mirror-source", "ranking: " + s.mirrors.source);
  $("mirrors").replaceChildren(mirrorTable(s.mirrors.ranking, s.now));
  $("custom-repos").replaceChildren(...s.customRepos.map((r) =>
    el("section", {}, el("h2", {}, "custom_repo " + r.name), mirrorTable(r.ranking, s.now))));

  const results = Object.entries(s.requests.byResult).sort((a, b) => b[1] - a[1]);
  fill($("results"), results.map(([name, n]) =>
    el("tr", {}, el("td", {}, name), el("td", { class: "num" }, count(n)))), 2, "No requests yet.");
  fill($("housekeeping"), [
    ["Files removed by retention", count(s.retention.removals)],
    ["Space freed by retention", bytes(s.retention.bytesFreed)],
    ["Downloads rejected (integrity)", count(s.integrityRejections)],
  ].map(([name, v]) => el("tr", {}, el("td", {}, name), el("td", { class: "num" }, v))), 2, "");

  const errors = s.recentErrors.map((e) =>
    el("li", {}, el("time", { datetime: new Date(e.at).toISOString() },
      new Date(e.at).toLocaleString()), e.message));
  if (errors.length === 0) errors.push(el("li", { class: "empty" }, "No errors since start."));
  $("errors").replaceChildren(...errors);
}

function showLiveness() {
  const age = (Date.now() - lastOk) / 1000;
  const live = $("live");
  live.classList.toggle("stale", age > REFRESH_MS / 1000 * 3);
  live.textContent = age > REFRESH_MS / 1000 * 3
    ? "no answer for " + duration(age) + ", retrying"
    : "live, updated " + (age < 1 ? "just now" : duration(age) + " ago");
}

async function refresh() {
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

render(JSON.parse($("initial-status").textContent));
document.body.dataset.refreshes = "0";
showLiveness();
setInterval(showLiveness, 1000);
setTimeout(refresh, REFRESH_MS);
`;

/** The whole page for the first `report`; `nonce` must match the page's Content-Security-Policy. */
export function statusPage(report: StatusReport, options: { nonce: string }): string {
  // Inside <script>, "<" is escaped so that no string in the report can close the element.
  const initial = JSON.stringify(report).replaceAll("<", "\\u003c");
  const nonce = escapeAttribute(options.nonce);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>flexo status</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<main>
<header>
  <h1>flexo <small>version <span id="version"></span> · up <span id="uptime"></span></small></h1>
  <span id="live">loading</span>
</header>
<section class="cards">
  <div class="card"><div class="label">Cache</div><div class="value" id="cache-size"></div>
    <div class="note" id="cache-files"></div><div class="note" id="cache-dir"></div></div>
  <div class="card"><div class="label">Hit ratio</div><div class="value" id="hit-ratio"></div>
    <div class="note" id="hit-note"></div></div>
  <div class="card"><div class="label">Served from cache (bandwidth saved)</div>
    <div class="value" id="from-cache"></div><div class="note" id="saved-note"></div></div>
  <div class="card"><div class="label">Served from upstream</div><div class="value" id="from-upstream"></div>
    <div class="note">fetched from mirrors while clients waited</div></div>
  <div class="card"><div class="label">Downloads now</div><div class="value" id="download-count"></div>
    <div class="note">into the cache from upstream</div></div>
</section>
<h2>Downloads in progress</h2>
<table>
  <thead><tr><th>File</th><th>Progress</th><th class="num">Speed</th><th>Mirror</th><th class="num">Running</th></tr></thead>
  <tbody id="downloads"></tbody>
</table>
<h2>Mirrors <small id="mirror-source"></small></h2>
<div id="mirrors"></div>
<div id="custom-repos"></div>
<div class="cols">
  <section><h2>Requests by result</h2><table><tbody id="results"></tbody></table></section>
  <section><h2>Housekeeping</h2><table><tbody id="housekeeping"></tbody></table></section>
</div>
<h2>Recent errors</h2>
<ol id="errors"></ol>
<footer>Machine-readable: <a href="status">status</a> (JSON) · <a href="metrics">metrics</a> (Prometheus).
  This page refreshes itself every ${REFRESH_INTERVAL_MS / 1000} seconds (<code>?refresh=500</code> for every
  half second).</footer>
</main>
<script id="initial-status" type="application/json">${initial}</script>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}

function escapeAttribute(value: string): string {
  return value.replace(/[&"<>]/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
