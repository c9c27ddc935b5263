/**
 * What happens to a request for a repository file: packages are served from the cache or downloaded once,
 * databases are revalidated upstream on every request, anything else is passed through uncached.
 *
 * @module
 */

import { type CachedFile, type CacheStore, HOT_FILE_MAX_SIZE, type HotFile } from "../cache/cache_store.ts";
import type { Download, DownloadHead } from "../download/download.ts";
import { PLAIN_GET, type RequestFacts } from "../http/range.ts";
import type { DownloadManager } from "../download/download_manager.ts";
import { purposeOf } from "../download/download_manager.ts";
import { HttpError } from "../http/http_error.ts";
import type { MirrorPool } from "../mirrors/mirrors.ts";
import type { RequestTarget } from "../repo/request_path.ts";
import {
  cacheControlFor,
  contentTypeFor,
  fileHeadersFor,
  ORIGIN_HEADER,
  serveCachedFile,
  type Served,
  serveDownload,
  type WholeDownload,
  wholeDownload,
} from "./responses.ts";
import { parseContentLength } from "../http/content_length.ts";
import { FailureTally } from "../download/failover.ts";
import { serveDatabaseOrStale, serveOffline, type StaleContext } from "./stale.ts";
import {
  askMirror,
  type MirrorAnswer,
  type TransferDeps,
  type TransferLimits,
} from "../download/transfer.ts";
import { hedgeDelayMs, raceHeads } from "../download/hedge.ts";
import { serveDatabaseSignature } from "./database_signature.ts";
import type { RequestResult } from "../status/stats.ts";

/** A served response and how it was served. */
export interface ProxyAnswer extends Served {
  result: RequestResult;
}

/** What the proxy needs. */
export interface ProxyContext {
  store: CacheStore;
  downloads: DownloadManager;
  poolFor: (target: RequestTarget) => MirrorPool;
  deps: TransferDeps;
  limits: TransferLimits;
  /** Counts body bytes sent to clients from upstream as they flow (live downloads and pass-through). */
  onUpstreamBytes?: (bytes: number) => void;
  /** Answer databases from the cache when the mirrors fail (see stale.ts); undefined turns that off. */
  stale?: StaleContext;
  /** `offline = true`: never contact mirrors (see stale.ts). */
  offline?: boolean;
}

/** Answers a GET or HEAD for a parsed request target. */
export async function serveTarget(
  req: Request,
  target: RequestTarget,
  ctx: ProxyContext,
): Promise<ProxyAnswer> {
  if (ctx.offline) return serveOffline(req, target, ctx);
  switch (target.kind) {
    case "package":
    case "package_signature":
      return await servePackage(req, target, ctx);
    case "database":
      return await serveDatabaseOrStale(req, target, ctx, () => serveDatabase(req, target, ctx));
    case "database_signature":
      // Paired with its database: never a signature from another mirror or snapshot, stale or not.
      return await serveDatabaseSignature(req, target, ctx, () => passThrough(req, target, ctx));
    default:
      return await passThrough(req, target, ctx);
  }
}

/** What the cache and the downloads hold of a package file, looked up before it is answered. */
export type PackageLookup =
  | { type: "hot"; file: HotFile }
  | { type: "cached"; file: CachedFile }
  | { type: "running"; download: Download }
  | { type: "missing" };

/**
 * Where a package file is, in the order it is served from: memory, the cache on disk, a running download; or
 * missing (the quick path for misses, quick_misses.ts, answers only that one).
 */
export function lookUpPackage(target: RequestTarget, ctx: ProxyContext): PackageLookup {
  const hot = ctx.store.hotFile(target.cacheSegments);
  if (hot) return { type: "hot", file: hot };
  const cached = ctx.store.statComplete(target.cacheSegments);
  if (cached) return { type: "cached", file: cached };
  const running = ctx.downloads.active(target);
  return running ? { type: "running", download: running } : { type: "missing" };
}

/** Starts the download of a package file just found missing; `via` is the client's (see {@linkcode viaOf}). */
export function startMiss(target: RequestTarget, ctx: ProxyContext, via: string | undefined): Download {
  return ctx.downloads.obtain(target, { via, missing: true });
}

/**
 * A download that completed the file before its head came (one that ended a moment ago): its file is served as a
 * hit instead. Undefined for a running download.
 */
function completedFile(download: Download): CachedFile | undefined {
  return download.state === "complete" ? download.file : undefined;
}

/** How a download's bytes are described and counted: a joined client's bytes are not counted as upstream's. */
function downloadOptions(head: DownloadHead, target: RequestTarget, joined: boolean, ctx: ProxyContext) {
  // A joined client's bytes crossed the internet once, for the client that started the download: they are
  // counted as saved (from the cache) by the request log, like a hit, not as bytes from upstream.
  return { head, ...fileHeadersFor(target), onBytes: joined ? undefined : ctx.onUpstreamBytes };
}

/**
 * The answer to a plain GET ({@linkcode PLAIN_GET}) that started `download`, once its head came, without a
 * `Response`: a 200 with all of the file as it is written, and `response()`, the same answer as the `Response`
 * {@linkcode answerDownload} makes (for a server that cannot send the file). Undefined when `answerDownload` must
 * answer (the file completed meanwhile, or its length is not known).
 */
export function wholeMiss(
  download: Download,
  head: DownloadHead,
  target: RequestTarget,
  ctx: ProxyContext,
): (WholeDownload & { response: () => Response }) | undefined {
  if (completedFile(download) !== undefined) return undefined;
  const options = downloadOptions(head, target, false, ctx);
  const whole = wholeDownload(download, options);
  return whole && { ...whole, response: () => serveDownload(PLAIN_GET, download, options).response };
}

/**
 * Waits, for a Range request, until the length of `download`'s file is known when it is not yet: its mirror sent
 * no `Content-Length` (a chunked body) and no partial record gave one, so it is known at the body's end. A 206
 * needs the range's last byte and the file's length (RFC 9110 section 14.4), and a 200 with the whole file
 * instead (which the RFC allows) fails pacman's resume of a `.part` file (curl: "Cannot resume"), while every
 * other answer to a Range (a cached file, a download of known length) is a 206. Returns the head to answer
 * with, its length the file's once waited for; fails as the download did.
 */
async function untilLengthForRange(
  req: RequestFacts,
  download: Download,
  head: DownloadHead,
): Promise<DownloadHead> {
  if (req.method !== "GET" || req.headers.get("range") === null) return head;
  if ((download.total ?? head.total) !== undefined) return head;
  await download.finished;
  if (download.state !== "complete") {
    const error = download.error;
    throw error instanceof HttpError ? error : new HttpError(502, error?.message ?? "the download failed");
  }
  return { ...head, total: download.written };
}

/** The answer with a download's bytes once its head came; `joined`: another request started it. */
export async function answerDownload(
  req: RequestFacts,
  target: RequestTarget,
  download: Download,
  options: { head: DownloadHead; joined: boolean },
  ctx: ProxyContext,
): Promise<ProxyAnswer> {
  const complete = options.joined ? undefined : completedFile(download);
  if (complete !== undefined) {
    return {
      ...(await serveCachedFile(req, complete, { origin: "Cache", ...fileHeadersFor(target) })),
      result: "CACHE HIT",
    };
  }
  const head = await untilLengthForRange(req, download, options.head);
  return {
    ...serveDownload(req, download, downloadOptions(head, target, options.joined, ctx)),
    result: options.joined ? "JOINED DOWNLOAD" : "CACHE MISS",
  };
}

async function servePackage(req: Request, target: RequestTarget, ctx: ProxyContext): Promise<ProxyAnswer> {
  const described = fileHeadersFor(target);
  // Small files served before come from memory; the others are read from disk (small ones into memory).
  const found = lookUpPackage(target, ctx);
  if (found.type === "hot") {
    return {
      ...(await serveCachedFile(req, found.file, { origin: "Cache", ...described })),
      result: "CACHE HIT",
    };
  }
  if (found.type === "cached") {
    const cached = found.file;
    const file = cached.size <= HOT_FILE_MAX_SIZE
      ? (await ctx.store.loadHot(target.cacheSegments)) ?? cached
      : cached;
    return { ...(await serveCachedFile(req, file, { origin: "Cache", ...described })), result: "CACHE HIT" };
  }
  const running = found.type === "running" ? found.download : undefined;
  if (!running && req.method === "HEAD") {
    // A HEAD must not start a download: ask upstream for the headers only.
    return await passThrough(req, target, ctx);
  }
  const download = running ?? startMiss(target, ctx, viaOf(req));
  const head = await download.head;
  return await answerDownload(req, target, download, { head, joined: running !== undefined }, ctx);
}

async function serveDatabase(req: Request, target: RequestTarget, ctx: ProxyContext): Promise<ProxyAnswer> {
  const described = fileHeadersFor(target);
  const cached = await ctx.store.statComplete(target.cacheSegments);
  const running = ctx.downloads.active(target);
  const download = running ??
    ctx.downloads.obtain(target, { ifModifiedSince: cached?.mtime.getTime(), via: viaOf(req) });
  const head = await download.head;
  if (head.status === "not_modified") {
    const current = await ctx.store.statComplete(target.cacheSegments);
    if (!current) throw new HttpError(503, `${target.fileName} vanished from the cache; retry the request`);
    const served = await serveCachedFile(req, current, { origin: "Cache", ...described });
    return { ...served, result: served.response.status === 304 ? "NOT MODIFIED" : "REVALIDATED" };
  }
  // A client that shares a download another started (CI runners' pacman -Sy at once) is counted as a joined
  // package download is: its bytes crossed the internet once, for the client that started it.
  const joined = running !== undefined;
  const served = serveDownload(
    req,
    download,
    downloadOptions(await untilLengthForRange(req, download, head), target, joined, ctx),
  );
  if (served.response.status === 304) return { ...served, result: "NOT MODIFIED" };
  return { ...served, result: joined ? "JOINED DOWNLOAD" : "UPDATED" };
}

/** Fetches a file from the mirrors without caching it (and answers HEAD for uncached files). */
async function passThrough(req: Request, target: RequestTarget, ctx: ProxyContext): Promise<ProxyAnswer> {
  const pool = ctx.poolFor(target);
  const plan = pool.plan(purposeOf(target.kind)).slice(0, 4);
  if (plan.length === 0) throw new HttpError(502, "No upstream mirror is configured");
  const tally = new FailureTally(pool);
  let answer: MirrorAnswer | undefined;
  let answeredBy = "";
  pool.hedgeBudget.earn();
  for (let next = 0, hedgeLeft = true; next < plan.length && answer === undefined;) {
    const race = await raceHeads<MirrorAnswer>({
      first: plan[next],
      second: hedgeLeft ? plan[next + 1] : undefined,
      start: (mirror) => askPassThrough(req, mirror + target.upstreamPath, ctx),
      // The client's own Range outside the file (416) is the answer, not a mirror failure.
      judge: (_mirror, head) =>
        head.type === "response" || head.type === "unsatisfiable" ? "answer" : "refusal",
      delayMs: hedgeDelayMs(pool, plan[next]),
      spend: () => pool.hedgeBudget.spend(),
      won: () => pool.hedgeBudget.won(),
      moveOn: (listener) => pool.onNewPrimary(listener),
      now: ctx.deps.now,
      timers: ctx.deps.timers,
      onHead: (mirror, head, ms) => head.type !== "failed" && pool.recordTtfb(mirror, ms),
    });
    next += race.hedged ? 2 : 1;
    if (race.hedged) hedgeLeft = false;
    for (const { mirror, waitedMs, late } of race.abandoned) {
      if (late) pool.recordFailure(mirror, `sent no response head within ${waitedMs} ms (hedged)`);
    }
    for (const { mirror, head } of race.refused) {
      if (head.type === "not_found") {
        tally.notFound(mirror);
      } else if (head.type === "failed") {
        tally.failed(mirror, head.message, {
          timeout: head.timeout,
          unreachable: !head.answered,
          loop: head.loop,
        });
      } else {
        tally.failed(mirror, "answered 304 unasked");
      }
    }
    answer = race.winner?.head;
    answeredBy = race.winner?.mirror ?? answeredBy;
    if (answer === undefined && tally.sawNotFound && target.kind === "database_signature") break;
  }
  if (answer?.type === "unsatisfiable") {
    throw new HttpError(416, `The requested range is outside ${target.fileName}`, {
      headers: answer.contentRange ? { "Content-Range": answer.contentRange } : {},
    });
  }
  if (answer?.type === "response") {
    const upstream = answer.response;
    const out = new Headers({ [ORIGIN_HEADER]: "RemoteMirror" });
    for (const name of ["content-length", "content-range", "last-modified", "accept-ranges"]) {
      const value = upstream.headers.get(name);
      if (value !== null) out.set(name, value);
    }
    // A file the cache keeps says its name's type on every path, as once cached (see responses.ts); only one it
    // never keeps says the mirror's.
    const mirrorType = target.kind === "other" ? upstream.headers.get("content-type") : null;
    out.set("content-type", mirrorType ?? contentTypeFor(target.fileName));
    const cacheControl = cacheControlFor(target.kind);
    if (cacheControl !== undefined) out.set("cache-control", cacheControl);
    const count = ctx.onUpstreamBytes;
    // Counted as they flow: as sent to the client, and as received from the mirror (its bytes on /metrics).
    const body = req.method === "HEAD" || !upstream.body ? null : upstream.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          count?.(chunk.byteLength);
          pool.recordBytes(answeredBy, chunk.byteLength);
          controller.enqueue(chunk);
        },
      }),
    );
    if (req.method === "HEAD") await upstream.body?.cancel();
    return {
      response: new Response(body, { status: upstream.status, headers: out }),
      bytes: parseContentLength(upstream.headers.get("content-length")) ?? 0,
      result: "PROXIED",
    };
  }
  throw tally.finalError(target.upstreamPath);
}

/** Asks one mirror for a pass-through file, forwarding the client's Range; `cancel` aborts it. */
function askPassThrough(
  req: Request,
  url: string,
  ctx: ProxyContext,
): { head: Promise<MirrorAnswer>; cancel: () => void } {
  const headers = new Headers();
  const via = viaOf(req);
  if (via) headers.set("Via", via);
  // A HEAD answers as without its Range (RFC 9110 section 14.2).
  const range = req.method === "GET" ? req.headers.get("range") : null;
  if (range) {
    headers.set("Range", range);
    // Without it, a mirror with a newer version would send a range of that one: a splice of two versions.
    const ifRange = req.headers.get("if-range");
    if (ifRange) headers.set("If-Range", ifRange);
  }
  const abort = new AbortController();
  const method = req.method === "HEAD" ? "HEAD" : "GET";
  const head = askMirror(url, { method, headers, abort }, { deps: ctx.deps, limits: ctx.limits });
  return { head, cancel: () => abort.abort(new Error("another mirror answered first")) };
}

/**
 * The client's `Via`, to carry upstream before this node's own name: a request that goes round through other
 * tiers then arrives back here naming this node, and is refused (src/app/loop_guard.ts).
 */
function viaOf(req: Request): string | undefined {
  return req.headers.get("via") ?? undefined;
}
