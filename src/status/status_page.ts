/**
 * The status page: one HTML document with its style and script inline (no external assets), filled from the
 * embedded first report and then from `GET /status` every two seconds without reloading.
 *
 * Everything shown is set as text (never as HTML): mirror URLs, file names and error messages come from
 * configuration and from clients' requests.
 *
 * The script is status_page_script.ts, embedded as its source text; the style is below.
 *
 * @module
 */

import type { StatusReport } from "./status_report.ts";
import { statusPageScript } from "./status_page_script.ts";
import { statusNotices } from "./status_notices.ts";

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
#outage { border: 1px solid var(--bad); color: var(--bad); border-radius: 6px; padding: 8px 12px;
  margin: 8px 0; }
.tag.ok { color: var(--ok); } .tag.warn { color: var(--warn); } .tag.bad { color: var(--bad); }
.error-text { color: var(--muted); font-size: 12px; }
ul.notices { list-style: none; padding: 0; margin: 6px 0 0; font-size: 12px; }
ul.notices:empty { display: none; }
ul.notices li { color: var(--warn); padding: 2px 0; word-break: break-word; }
ul.notices .hint { color: var(--muted); }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 0 28px; }
ul#prefetch-files { list-style: none; padding: 0; margin: 4px 0 0; font-size: 12px; color: var(--muted); }
ul#prefetch-files li { word-break: break-all; }
ol#errors { list-style: none; padding: 0; margin: 0; }
ol#errors li { padding: 6px 0; border-bottom: 1px solid var(--line); word-break: break-word; }
ol#errors time { color: var(--muted); margin-right: 10px; font-variant-numeric: tabular-nums; }
#traffic svg { display: block; width: 100%; height: 140px; background: var(--panel);
  border: 1px solid var(--line); border-radius: 8px; }
#traffic .cache { fill: var(--ok); } #traffic .upstream { fill: var(--warn); }
#traffic .rate { fill: none; stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.legend { color: var(--muted); font-size: 12px; margin-top: 4px; }
.legend .key { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 10px;
  vertical-align: -1px; }
.legend .key.cache { background: var(--ok); } .legend .key.upstream { background: var(--warn); }
.legend .key.rate { background: var(--accent); height: 2px; vertical-align: 3px; }
footer { margin-top: 30px; color: var(--muted); font-size: 12px; }
a { color: var(--accent); }
`;

// The script's text, JavaScript (see status_page_script.ts for why a function's source), made once: it is
// the same for every page. The page's nonce allows it, like the style, whatever its text. It holds no
// "</script" and no "<!--", so it cannot end its element early (tests/status/status_page_script_test.ts).
const SCRIPT = `(${statusPageScript.toString()})(${REFRESH_INTERVAL_MS}, ${statusNotices.toString()});`;

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
  <h1>flexo <small>node <span id="node-name"></span> · version <span id="version"></span> · up
    <span id="uptime"></span></small></h1>
  <span id="live">loading</span>
</header>
<div id="outage" role="alert" hidden></div>
<section class="cards">
  <div class="card"><div class="label">Cache</div><div class="value" id="cache-size"></div>
    <div class="note" id="cache-files"></div><div class="note" id="cache-dir"></div></div>
  <div class="card"><div class="label">Hit ratio</div><div class="value" id="hit-ratio"></div>
    <div class="note" id="hit-note"></div></div>
  <div class="card"><div class="label">Served from cache (bandwidth saved)</div>
    <div class="value" id="from-cache"></div><div class="note" id="saved-note"></div></div>
  <div class="card"><div class="label">Served from upstream</div><div class="value" id="from-upstream"></div>
    <div class="note">fetched from mirrors while clients waited</div></div>
  <div class="card"><div class="label">Taken from cache peers</div><div class="value" id="peer-hits"></div>
    <div class="note" id="peer-note"></div><ul class="notices" id="peer-notices"></ul></div>
  <div class="card"><div class="label">Downloads now</div><div class="value" id="download-count"></div>
    <div class="note">into the cache from upstream</div></div>
</section>
<h2>Last 24 hours <small id="traffic-note"></small></h2>
<div id="traffic"></div>
<div class="legend"><span class="key cache"></span>bytes from the cache<span class="key upstream"></span>bytes
  from upstream<span class="key rate"></span>requests per minute (own scale)</div>
<h2>Downloads in progress</h2>
<table>
  <thead><tr><th>File</th><th>Progress</th><th class="num">Speed</th><th>Mirror</th><th class="num">Running</th></tr></thead>
  <tbody id="downloads"></tbody>
</table>
<h2>Mirrors <small id="mirror-source"></small></h2>
<div id="mirrors"></div>
<div id="custom-repos"></div>
<div class="cols">
  <section><h2>Requests by result</h2><table><tbody id="results"></tbody></table>
    <ul class="notices" id="request-notices"></ul></section>
  <section><h2>Housekeeping</h2><table><tbody id="housekeeping"></tbody></table></section>
  <section><h2>Prefetch</h2><table><tbody id="prefetch"></tbody></table>
    <ul id="prefetch-files"></ul></section>
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
