/**
 * Counters of what the proxy did, for the status page and the metrics endpoint.
 *
 * @module
 */

import { TrafficHistory } from "./traffic_history.ts";

/** How a request was answered, for the request log and the statistics. */
export type RequestResult =
  | "CACHE HIT"
  | "CACHE MISS"
  | "JOINED DOWNLOAD"
  | "REVALIDATED"
  | "UPDATED"
  | "NOT MODIFIED"
  | "PROXIED"
  /** A database answered from the cache because the mirrors failed (stale-if-error, or offline). */
  | "STALE"
  /** A 504 to `Cache-Control: only-if-cached` (a cache peer's question) for a file this node lacks. */
  | "NOT CACHED";

/** How a request ended, as counted: the proxy's results plus the error classes. */
export type CountedResult =
  | RequestResult
  | "NOT FOUND"
  | "CLIENT ERROR"
  | "UPSTREAM ERROR"
  | "INTERNAL ERROR";

/** One remembered error. */
export interface RecentError {
  /** When it happened (milliseconds since the epoch). */
  at: number;
  /** What went wrong. */
  message: string;
}

/** Live counters; cheap to update on every request. */
export class Stats {
  /** Requests by result, HEAD requests included. */
  readonly requests: Map<CountedResult, number> = new Map();
  /**
   * HEAD requests by result, counted in `requests` too but not in the hit ratio: a HEAD fetches no file (pacman
   * sends none; monitoring probes do), and probes of one cached file would make the ratio what they please.
   */
  readonly headRequests: Map<CountedResult, number> = new Map();
  /**
   * Body bytes that did not cross the internet for their client: sent from complete cached files, or shared
   * from a download another client started (JOINED DOWNLOAD). The hit ratio counts the same answers as hits.
   */
  bytesFromCache = 0;
  /** Body bytes sent to clients from upstream (live downloads and pass-through), counted as they flow. */
  bytesFromUpstream = 0;
  /** Files removed by the retention policy or the size limit. */
  retentionRemovals = 0;
  /** Bytes freed by the retention policy or the size limit. */
  retentionBytesFreed = 0;
  /** Downloads discarded because they did not match a repository database. */
  integrityRejections = 0;
  /** Misses of a package or signature that a cache peer had (downloaded from it, not from a mirror). */
  peerHits = 0;
  /**
   * New client connections closed at once because `max_connections` were open and each was answering a
   * request (counted by the server through `startServer`'s `onConnectionRefused`).
   */
  refusedConnections = 0;
  /**
   * Requests the server refused before the app saw them, by status: heads it could not read (400, 414, 431),
   * methods it does not serve (405, 501), clients outside `allowed_clients` (403). The request log has no line
   * for them (a scanner would fill it); this is where an operator sees them.
   */
  readonly refusedRequests = new Map<number, number>();
  /**
   * Peer lookups a cache peer answered 508 Loop Detected (it has this node's node_name, or is this node): such
   * a peer never helps.
   */
  peerLoops = 0;
  /** Counts one request refused by the server with `status` (see {@linkcode Stats.refusedRequests}). */
  refusedRequest(status: number): void {
    this.refusedRequests.set(status, (this.refusedRequests.get(status) ?? 0) + 1);
  }

  /** The last errors, newest last. */
  readonly recentErrors: RecentError[] = [];
  /** Requests and bytes of the last 24 hours, for the status page's chart. */
  readonly history: TrafficHistory;
  #maxErrors: number;

  /**
   * Counters at zero.
   *
   * @param options `maxErrors`: how many recent errors to keep (default 20); `now`: the clock of the history.
   */
  constructor(options: { maxErrors?: number; now?: () => number } = {}) {
    this.#maxErrors = options.maxErrors ?? 20;
    this.history = new TrafficHistory({ now: options.now });
  }

  /**
   * Counts one answered request (`head`: a HEAD request, see {@linkcode Stats.headRequests}) and the body bytes it
   * sends from the cache. Bytes from upstream are counted as they flow ({@linkcode Stats.recordUpstreamBytes}),
   * not here.
   */
  recordRequest(result: CountedResult, cacheBytes = 0, head = false): void {
    this.requests.set(result, (this.requests.get(result) ?? 0) + 1);
    if (head) this.headRequests.set(result, (this.headRequests.get(result) ?? 0) + 1);
    this.bytesFromCache += cacheBytes;
    this.history.add("requests", 1);
    if (cacheBytes > 0) this.history.add("fromCacheBytes", cacheBytes);
  }

  /** Counts body bytes sent to a client as they came from upstream. */
  recordUpstreamBytes(bytes: number): void {
    this.bytesFromUpstream += bytes;
    this.history.add("fromUpstreamBytes", bytes);
  }

  /** Remembers an error for the status page. */
  recordError(at: number, message: string): void {
    this.recentErrors.push({ at, message });
    if (this.recentErrors.length > this.#maxErrors) this.recentErrors.shift();
  }

  /**
   * A number that changes whenever a request was answered or body bytes flowed (from the cache or upstream):
   * compared between two moments, it tells whether the proxy did work in between.
   */
  activity(): number {
    let requests = 0;
    for (const count of this.requests.values()) requests += count;
    return requests + this.bytesFromCache + this.bytesFromUpstream;
  }

  /** GET requests for files that the hit ratio counts: hits and misses of packages and databases. */
  lookups(): { hits: number; misses: number } {
    const count = (result: CountedResult) =>
      (this.requests.get(result) ?? 0) - (this.headRequests.get(result) ?? 0);
    return {
      hits: count("CACHE HIT") + count("REVALIDATED") + count("NOT MODIFIED") + count("JOINED DOWNLOAD"),
      misses: count("CACHE MISS") + count("UPDATED"),
    };
  }

  /** Cache hits divided by the file requests of {@linkcode Stats.lookups} (HEAD apart); 0 with none. */
  hitRatio(): number {
    const { hits, misses } = this.lookups();
    return hits + misses === 0 ? 0 : hits / (hits + misses);
  }
}
