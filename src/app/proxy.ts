/**
 * What happens to a request for a repository file: packages are served from the cache or downloaded once,
 * databases are revalidated upstream on every request, anything else is passed through uncached.
 *
 * @module
 */

import { type CacheStore, HOT_FILE_MAX_SIZE } from "../cache/cache_store.ts";
import type { DownloadManager } from "../download/download_manager.ts";
import { purposeOf } from "../download/download_manager.ts";
import { HttpError } from "../http/http_error.ts";
import type { MirrorPool } from "../mirrors/mirrors.ts";
import type { RequestTarget } from "./request_path.ts";
import { contentTypeFor, ORIGIN_HEADER, serveCachedFile, type Served, serveDownload } from "./responses.ts";
import { askMirror, type TransferDeps, type TransferLimits } from "../download/transfer.ts";
import { redactUrl } from "../redact_url.ts";

/** How a request was answered, for the request log and the statistics. */
export type RequestResult =
  | "CACHE HIT"
  | "CACHE MISS"
  | "JOINED DOWNLOAD"
  | "REVALIDATED"
  | "UPDATED"
  | "NOT MODIFIED"
  | "PROXIED";

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
}

/** Answers a GET or HEAD for a parsed request target. */
export async function serveTarget(
  req: Request,
  target: RequestTarget,
  ctx: ProxyContext,
): Promise<ProxyAnswer> {
  switch (target.kind) {
    case "package":
    case "package_signature":
      return await servePackage(req, target, ctx);
    case "database":
    case "database_signature":
      return await serveDatabase(req, target, ctx);
    default:
      return await passThrough(req, target, ctx);
  }
}

async function servePackage(req: Request, target: RequestTarget, ctx: ProxyContext): Promise<ProxyAnswer> {
  const contentType = contentTypeFor(target.fileName);
  // Small files served before come from memory; the others are read from disk (small ones into memory).
  const hot = ctx.store.hotFile(target.cacheSegments);
  if (hot) {
    return { ...(await serveCachedFile(req, hot, { origin: "Cache", contentType })), result: "CACHE HIT" };
  }
  const cached = await ctx.store.statComplete(target.cacheSegments);
  if (cached) {
    const file = cached.size <= HOT_FILE_MAX_SIZE
      ? (await ctx.store.loadHot(target.cacheSegments)) ?? cached
      : cached;
    return { ...(await serveCachedFile(req, file, { origin: "Cache", contentType })), result: "CACHE HIT" };
  }
  const running = ctx.downloads.active(target);
  if (!running && req.method === "HEAD") {
    // A HEAD must not start a download: ask upstream for the headers only.
    return await passThrough(req, target, ctx);
  }
  const download = running ?? ctx.downloads.obtain(target);
  const head = await download.head;
  if (download.state === "complete" && download.file && !running) {
    // It was completed by a download that ended a moment ago.
    return {
      ...(await serveCachedFile(req, download.file, { origin: "Cache", contentType })),
      result: "CACHE HIT",
    };
  }
  return {
    ...serveDownload(req, download, { head, contentType, onBytes: ctx.onUpstreamBytes }),
    result: running ? "JOINED DOWNLOAD" : "CACHE MISS",
  };
}

async function serveDatabase(req: Request, target: RequestTarget, ctx: ProxyContext): Promise<ProxyAnswer> {
  const contentType = contentTypeFor(target.fileName);
  const cached = await ctx.store.statComplete(target.cacheSegments);
  const download = ctx.downloads.active(target) ??
    ctx.downloads.obtain(target, { ifModifiedSince: cached?.mtime.getTime() });
  const head = await download.head;
  if (head.status === "not_modified") {
    const current = await ctx.store.statComplete(target.cacheSegments);
    if (!current) throw new HttpError(503, `${target.fileName} vanished from the cache; retry the request`);
    const served = await serveCachedFile(req, current, { origin: "Cache", contentType });
    return { ...served, result: served.response.status === 304 ? "NOT MODIFIED" : "REVALIDATED" };
  }
  const served = serveDownload(req, download, { head, contentType, onBytes: ctx.onUpstreamBytes });
  return { ...served, result: served.response.status === 304 ? "NOT MODIFIED" : "UPDATED" };
}

/** Fetches a file from the mirrors without caching it (and answers HEAD for uncached files). */
async function passThrough(req: Request, target: RequestTarget, ctx: ProxyContext): Promise<ProxyAnswer> {
  const pool = ctx.poolFor(target);
  const plan = pool.plan(purposeOf(target.kind)).slice(0, 4);
  if (plan.length === 0) throw new HttpError(502, "No upstream mirror is configured");
  const errors: string[] = [];
  let notFound = 0;
  for (const mirror of plan) {
    const headers = new Headers();
    const range = req.headers.get("range");
    if (range) headers.set("Range", range);
    const abort = new AbortController();
    const method = req.method === "HEAD" ? "HEAD" : "GET";
    const answer = await askMirror(mirror + target.upstreamPath, { method, headers, abort }, {
      deps: ctx.deps,
      limits: ctx.limits,
    });
    if (answer.type === "not_found") {
      notFound++;
      if (target.kind === "database_signature") break;
      continue;
    }
    if (answer.type === "unsatisfiable") {
      // The client's own Range is outside the file: that is the answer, not a mirror failure.
      throw new HttpError(416, `The requested range is outside ${target.fileName}`, {
        headers: answer.contentRange ? { "Content-Range": answer.contentRange } : {},
      });
    }
    if (answer.type === "failed" || answer.type === "not_modified") {
      errors.push(
        `${redactUrl(mirror)}: ${answer.type === "failed" ? answer.message : "answered 304 unasked"}`,
      );
      continue;
    }
    const upstream = answer.response;
    const out = new Headers({ [ORIGIN_HEADER]: "RemoteMirror" });
    for (
      const name of ["content-type", "content-length", "content-range", "last-modified", "accept-ranges"]
    ) {
      const value = upstream.headers.get(name);
      if (value !== null) out.set(name, value);
    }
    if (!out.has("content-type")) out.set("content-type", contentTypeFor(target.fileName));
    const count = ctx.onUpstreamBytes;
    const body = req.method === "HEAD" || !upstream.body ? null : count
      ? upstream.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            count(chunk.byteLength);
            controller.enqueue(chunk);
          },
        }),
      )
      : upstream.body;
    if (req.method === "HEAD") await upstream.body?.cancel();
    return {
      response: new Response(body, { status: upstream.status, headers: out }),
      bytes: Number(upstream.headers.get("content-length") ?? 0),
      result: "PROXIED",
    };
  }
  if (errors.length === 0 && notFound > 0) {
    throw new HttpError(404, `${target.upstreamPath} was not found upstream`);
  }
  throw new HttpError(502, `Every mirror failed for ${target.upstreamPath}: ${errors.join("; ")}`);
}
