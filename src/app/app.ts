/**
 * The proxy as one `(Request) => Promise<Response>`: routes, the request log and the one error handler.
 * Everything with I/O outside the cache (upstream fetch, clock) is passed in, so tests drive it with
 * `new Request()` and fakes.
 *
 * @module
 */

import { Hono } from "hono";
import { CacheStore, type FreeSpaceProbe } from "../cache/cache_store.ts";
import type { CacheUsageSnapshot } from "../cache/cache_usage.ts";
import type { PathProbe } from "../cache/surely_missing.ts";
import type { Config } from "../config/config_schema.ts";
import type { Download } from "../download/download.ts";
import { DownloadManager } from "../download/download_manager.ts";
import { HttpError, methodError } from "../http/http_error.ts";
import { MirrorPool } from "../mirrors/mirrors.ts";
import { expectedFileOf, isIndexedDatabase, PackageIndex } from "../repo/package_index.ts";
import { type ProxyAnswer, type ProxyContext, serveTarget } from "./proxy.ts";
import { accessControl } from "./access_control.ts";
import type { Admission, QuickAnswer, QuickOptions, Refusal } from "../server/quick_answer.ts";
import { headerOf, type RequestHead } from "../server/http1_head.ts";
import { rawTargetOf, type ResponseSent, type ServeInfo, targetPath } from "../http/client_request.ts";
import { AnswerLog } from "./request_log.ts";
import { Outage, STALE_DEADLINE_MS } from "./stale.ts";
import type { LogOutput } from "../logging.ts";
import { QuickAnswers } from "./quick_answers.ts";
import { QuickMisses } from "./quick_misses.ts";
import { parseRequestPath, type RequestTarget } from "../repo/request_path.ts";
import { type RequestResult, Stats } from "../status/stats.ts";
import type { RequestFacts } from "../http/range.ts";
import { statusRoutes } from "../status/status_routes.ts";
import { SYSTEM_TIMERS, type Timers, type TransferDeps, type TransferLimits } from "../download/transfer.ts";
import { errorAnswer } from "./error_answer.ts";
import { PackageUsage } from "../prefetch/package_usage.ts";
import { Prefetcher, type PrefetchTimers } from "../prefetch/prefetcher.ts";
import { noteClientFetch, prefetchRoutes } from "../prefetch/prefetch_route.ts";
import { cacheDirectoryProbe, healthRoutes, NodeHealth } from "./health.ts";
import { PARTIAL_DIR } from "../cache/cache_paths.ts";
import { defaultNodeName, fetchWithVia, refuseLoop } from "./loop_guard.ts";
import { clientAddressOf, trustedProxyCheck } from "./forwarded.ts";
import { asksOnlyIfCached, serveOnlyIfCached } from "./only_if_cached.ts";
import { fetchWithPeerRules, findOnPeers, PeerLoops, SilentPeers } from "../download/peers.ts";
import { DatabaseFirst } from "./database_first.ts";
import { removeOutdatedPackages } from "../cache/outdated_packages.ts";

/** I/O and tuning passed to {@linkcode createApp}. */
export interface AppOptions {
  /** The HTTP client for upstream requests. Default: the global fetch. */
  fetch?: typeof fetch;
  /** Clock in milliseconds. Default: Date.now. */
  now?: () => number;
  /** The pool of official mirrors; by default one is made from `mirrors_predefined`. */
  pool?: MirrorPool;
  /** Overrides for transfer limits derived from the configuration (tests use short ones). */
  limits?: Partial<TransferLimits>;
  /** Called when a download has committed a complete file. */
  onDownloadComplete?: (download: Download, target: RequestTarget) => void;
  /** Called when the proxy removed a cached file itself (one a newer database lists differently). */
  onCacheFileRemoved?: (path: string, bytes: number) => void;
  /** Counters to update; by default a new one. */
  stats?: Stats;
  /** The cache's size for the status page and metrics (see `cache_usage.ts`). */
  cacheUsage?: () => CacheUsageSnapshot | undefined;
  /** How long a database request waits for the mirrors before the cached copy answers (see stale.ts). */
  staleDeadlineMs?: number;
  /**
   * Timers for that deadline and for every transfer (connect timeout, a body's watchdog and pacing, hedging);
   * tests give their own with {@linkcode AppOptions.now}. Default `setTimeout`.
   */
  timers?: Timers;
  /** Timers of the prefetch schedule (tests pass fake ones). */
  prefetchTimers?: PrefetchTimers;
  /** This node's name for Via; default `node_name`, else {@linkcode defaultNodeName}. */
  nodeName?: string;
  /** The log's output (from `setupLogging`): the request log writes to it directly, `/metrics` shows its drops. */
  log?: LogOutput;
  /**
   * The cache's cheap "nothing there" check before a synchronous stat or read on a miss (see surely_missing.ts);
   * main.ts passes one made from the C library. Default: a caught `Deno.statSync`.
   */
  surelyMissing?: PathProbe;
  /**
   * How much the cache's file system can still take (see `CacheStore.freeBytes`); main.ts passes one made from
   * the C library. Default: never known, and a download that runs out of space fails when a write does.
   */
  freeSpace?: FreeSpaceProbe;
}

/** The running proxy's parts, for the server, the status page and tests. */
export interface FlexoApp {
  /** Answers one request; `info` (from the server) tells who asks and when the response has been sent. */
  fetch: (req: Request, info?: ServeInfo) => Response | Promise<Response>;
  /**
   * The answer to a plain GET of a package file served before and still in the cache, made without a `Request`:
   * the whole response as bytes for a small file in memory, or (with `files`) a head and the file to send with
   * sendfile; undefined for every other request, which then goes to {@linkcode FlexoApp.fetch}. flexo's own
   * connection layer asks this first (see http1_connection.ts and quick_answers.ts).
   */
  quickAnswer: (head: RequestHead, options: QuickOptions) => QuickAnswer | undefined;
  /**
   * Whether a client is served, decided by its address once per connection (`allowed_clients`); undefined when
   * every client is. A refused client gets the refusal as the answer to its requests; a trusted proxy's requests
   * are each judged on the full path (`"each_request"`), where the client it names is checked.
   */
  admit?: (remote: Deno.NetAddr) => Admission;
  /** Official mirrors. */
  pool: MirrorPool;
  /** One pool per custom repository, by name. */
  customPools: Map<string, MirrorPool>;
  store: CacheStore;
  downloads: DownloadManager;
  config: Config;
  /** What the proxy did so far. */
  stats: Stats;
  /** Sizes and checksums from the repository databases, to verify downloads. */
  packageIndex: PackageIndex;
  /** When the app was created (milliseconds). */
  startedAt: number;
  /** Whether the mirrors are failing while cached databases are served (see stale.ts). */
  outage: Outage;
  /** Prefetch: runs on a schedule once started (`prefetcher.start()`), or on request. */
  prefetcher: Prefetcher;
  /** Serving or draining, as `/healthz` tells balancers. */
  health: NodeHealth;
  /** This node's name in Via headers. */
  nodeName: string;
  /**
   * Writes what the app keeps in memory for the next start and resolves when it is on disk: the package usage
   * record's last save (see `PackageUsage.flush`). A graceful stop awaits it before the process ends.
   */
  flush(): Promise<void>;
}

/** Transfer limits from the configuration. */
export function limitsFrom(config: Config): TransferLimits {
  const lowSpeedTimeMs = config.low_speed_time_secs * 1000;
  return {
    connectTimeoutMs: config.connect_timeout,
    lowSpeedLimit: config.low_speed_limit,
    lowSpeedTimeMs,
    lastResortStallMs: Math.max(30_000, lowSpeedTimeMs * 6),
    maxSpeedLimit: config.max_speed_limit,
  };
}

/** Builds the proxy for a configuration. Has no side effects until a request arrives. */
export function createApp(config: Config, options: AppOptions = {}): FlexoApp {
  const nodeName = options.nodeName ?? config.node_name ?? defaultNodeName(config.port);
  const timers = options.timers ?? SYSTEM_TIMERS;
  const deps: TransferDeps = {
    fetch: fetchWithVia(fetchWithPeerRules(options.fetch ?? globalThis.fetch, config.cache_peers), nodeName),
    now: options.now ?? Date.now,
    timers,
  };
  const limits: TransferLimits = { ...limitsFrom(config), ...options.limits };
  const pool = options.pool ?? new MirrorPool({ now: deps.now });
  if (!options.pool) pool.setMirrors(config.mirrors_predefined, "predefined");
  const customPools = new Map<string, MirrorPool>();
  for (const repo of config.custom_repo) {
    const custom = new MirrorPool({ now: deps.now });
    custom.setMirrors(repo.urls, `custom_repo ${repo.name}`);
    customPools.set(repo.name, custom);
  }
  // A package found on a cache peer: its next download tries that peer first, then the pool's mirrors (see
  // peers.ts). The peer is not put in a pool: the pools' counters (/metrics, /status) are those of mirrors.
  const peerFirst = new Map<string, string>();
  const silentPeers = new SilentPeers({ now: deps.now });
  const peerLoops = new PeerLoops({ now: deps.now, nodeName });
  // A peer whose copy of a file failed verification (it rotted on its disk, or the peer stored it unverified)
  // is not asked for that file again: the mirrors have it. One entry per such file and peer.
  const corruptOnPeer = new Set<string>();
  const poolFor = (target: RequestTarget) => target.customRepo ? customPools.get(target.customRepo)! : pool;
  const firstFrom = (target: RequestTarget) => {
    const key = target.cacheSegments.join("/");
    const peer = peerFirst.get(key);
    peerFirst.delete(key);
    return peer;
  };
  const store = new CacheStore(config.cache_directory, {
    now: deps.now,
    surelyMissing: options.surelyMissing,
    freeSpace: options.freeSpace,
  });
  const stats = options.stats ?? new Stats({ now: deps.now });
  // A custom repository's package rebuilt under the same name: the cached copy the newer database no longer
  // lists goes (never an official repository's: see outdated_packages.ts).
  const packageIndex = new PackageIndex({
    onIndexed: async (dir, entries, previous) => {
      for (const file of await removeOutdatedPackages(dir, entries, store, previous)) {
        options.onCacheFileRemoved?.(file.path, file.bytes);
      }
    },
  });
  const downloads = new DownloadManager({
    store,
    poolFor,
    firstFrom,
    deps,
    limits,
    expectFor: async (target) => {
      if (target.kind !== "package" && target.kind !== "package_signature") return undefined;
      // A node of a cluster (it has peers, or a balancer in front) may never see a database request of a
      // repository whose packages it is asked for: it fetches the database first. A single proxy is synced by
      // its clients' pacman -Sy, and keeps to the mirror requests its clients make.
      const entry = inCluster
        ? await databaseFirst.expected(target)
        : await packageIndex.expectedWhenLoaded(target.cacheSegments);
      // A signature is checked when the database carries it (%PGPSIG%), a package always.
      return entry && expectedFileOf(entry, target.fileName);
    },
    onIntegrityFailure: (download, reason, blamed) => {
      for (const peer of blamed) {
        if (config.cache_peers.includes(peer)) corruptOnPeer.add(`${peer}\0${download.finalPath}`);
      }
      stats.integrityRejections++;
      stats.recordError(deps.now(), reason);
    },
    onComplete: (download, target) => {
      // A file taken from a cache peer: counted once it is complete, so a peer that said it had the file and
      // then failed (or sent a file that failed its check) counts nothing.
      if (download.source !== undefined && config.cache_peers.includes(download.source)) stats.peerHits++;
      if (target.kind === "database" && isIndexedDatabase(target.fileName)) {
        packageIndex.loadDatabase(store.root, download.finalPath);
      }
      options.onDownloadComplete?.(download, target);
    },
  });
  const outage = new Outage(deps.now);
  // A package that no cached database lists: its folder's database first, so that it is verified too.
  const inCluster = config.cache_peers.length > 0 || config.trusted_proxies.length > 0;
  const databaseFirst = new DatabaseFirst({
    lookUp: (segments) => packageIndex.expectedWhenLoaded(segments),
    fetchDatabase: async (rawPath) => {
      const target = parseRequestPath(rawPath, { customRepoNames });
      // No client gets these bytes: they are not counted as served (ctx's onUpstreamBytes counts those).
      const answer = await serveTarget(new Request(`http://flexo.internal${rawPath}`), target, {
        ...ctx,
        onUpstreamBytes: undefined,
      });
      // Drained, not kept: the download stores the database as it streams.
      for await (const _ of answer.response.body ?? []) { /* drained */ }
      // Its reading begins when its download ends (onComplete), which the lookup then waits for.
      await downloads.active(target)?.finished;
      if (answer.response.status >= 400) throw new Error(`HTTP ${answer.response.status}`);
    },
    now: deps.now,
  });
  const ctx: ProxyContext = {
    store,
    downloads,
    poolFor,
    deps,
    limits,
    onUpstreamBytes: (bytes) => stats.recordUpstreamBytes(bytes),
    stale: {
      deadlineMs: options.staleDeadlineMs ?? STALE_DEADLINE_MS,
      timers,
      outage,
    },
    offline: config.offline,
  };
  const customRepoNames = new Set(customPools.keys());
  const startedAt = deps.now();
  const usage = new PackageUsage(store.root, { now: deps.now });
  // Which packages clients fetch is recorded only for prefetch: it costs a parse and a write per new package.
  const recordsUsage = config.prefetch.enabled;
  const prefetchDeps = { store, downloads, packageIndex, usage, customRepoNames, now: deps.now };
  const prefetcher = new Prefetcher(
    { ...prefetchDeps, offline: config.offline, keepVersions: config.num_versions_retain },
    config.prefetch,
    options.prefetchTimers,
  );

  // Routes match the target as the client sent it, as file paths are checked: `new Request()` would have turned
  // `/x/%2e%2e/metrics` into `/metrics`.
  const hono = new Hono({ getPath: (req) => pathOf(req) });
  // A HEAD answer says the Content-Length its GET has: Hono drops a HEAD answer's body, and its length with it.
  hono.use("*", async (c, next) => {
    await next();
    if (c.req.method === "HEAD") c.res = await withLength(c.res);
  });
  const health = new NodeHealth({ probe: cacheDirectoryProbe(store.root, PARTIAL_DIR), now: deps.now });
  // Before the access check: a balancer in trusted_proxies checks health on its own behalf, naming no client, and
  // need not be in allowed_clients (it would see every node down). The answer says only serving or draining.
  hono.route("/", healthRoutes(health));
  const allowed = accessControl(config.allowed_clients);
  const fromTrustedProxy = trustedProxyCheck(config.trusted_proxies);
  const clientAddress = clientAddressOf(config.trusted_proxies);
  hono.use("*", async (c, next) => {
    refuseLoop(c.req.header("via") ?? null, nodeName);
    // Connections from trusted proxies were let in by `admit`: their clients are checked request by request.
    const remote = (c.env as ServeInfo | undefined)?.remoteAddr?.hostname;
    if (remote !== undefined && fromTrustedProxy(remote)) {
      const client = clientAddress(remote, c.req.raw.headers);
      if (!allowed(client.address)) {
        throw new HttpError(403, client.source === "conflicting" ? CONFLICTING_CLIENTS : refusal.message);
      }
    }
    await next();
  });
  hono.route(
    "/",
    statusRoutes({ pool, customPools, store, downloads, stats, startedAt, nodeName, config, outage }, {
      now: deps.now,
      cacheUsage: options.cacheUsage,
      prefetch: () => prefetcher.status(),
      logDropped: options.log && (() => options.log!.dropped),
    }),
  );
  const answers = new AnswerLog(stats, options.log);
  /**
   * Counts and logs an answer when its response has ended (`completed`, with the bytes the client was given), and
   * keeps a file being read safe from cleaning until then. `remote` is the connection's address.
   */
  const settle = (
    req: RequestFacts,
    rawPath: string,
    answer: { result: RequestResult; status: number; bytes: number; readsFile?: string },
    options: { started: number; remote?: string; completed?: Promise<ResponseSent> },
  ): void => {
    const release = answer.readsFile ? store.beginRead(answer.readsFile) : undefined;
    const remote = options.remote;
    const client = remote === undefined ? undefined : clientAddress(remote, req.headers);
    const record = (sent: ResponseSent) =>
      answers.record({
        method: req.method,
        path: rawPath,
        result: answer.result,
        status: answer.status,
        bytes: sent.bytes,
        ms: deps.now() - options.started,
        whole: sent.whole,
        forwardedFor: client?.source === "forwarded" ? client.address : undefined,
      });
    const completed = options.completed;
    if (completed) {
      completed.then((sent) => {
        release?.();
        record(sent);
      });
    } else {
      // Not from the server (tests): the answer as planned.
      release?.();
      record({ bytes: answer.bytes, whole: true });
    }
  };
  /** {@linkcode settle} for an answer of the full path, whose response it returns. */
  const finish = (
    req: Request,
    rawPath: string,
    answer: ProxyAnswer,
    options: { started: number; info?: ServeInfo },
  ): Response => {
    const { result, bytes, readsFile, response } = answer;
    settle(req, rawPath, { result, status: response.status, bytes, readsFile }, {
      started: options.started,
      remote: options.info?.remoteAddr?.hostname,
      completed: options.info?.completed,
    });
    return response;
  };
  // Plain hits on package paths seen before skip routing (see quick_answers.ts).
  const quick = new QuickAnswers(
    store,
    answers,
    config.trusted_proxies.length === 0 ? undefined : (remote, head) => {
      // Every line of a header, joined: HAProxy's `option forwardfor` adds its own X-Forwarded-For line after the
      // client's, and the address a client wrote must not be taken for the one the proxy reported.
      const client = clientAddress(remote, { get: (name) => headerOf(head, name) ?? null });
      return client.source === "forwarded" ? client.address : undefined;
    },
  );
  hono.route("/", prefetchRoutes(prefetcher, (remote, headers) => clientAddress(remote, headers).address));
  hono.on(["GET", "HEAD"], "*", async (c) => {
    const started = deps.now();
    const req = c.req.raw;
    const rawPath = pathOf(req);
    const target = parseRequestPath(rawPath, { customRepoNames });
    quick.remember(rawPath, target);
    if (asksOnlyIfCached(req.headers.get("cache-control"))) {
      return finish(req, rawPath, serveOnlyIfCached(req, target, store), {
        started,
        info: c.env as ServeInfo | undefined,
      });
    }
    if (
      config.cache_peers.length > 0 && (target.kind === "package" || target.kind === "package_signature") &&
      !target.customRepo && !store.statComplete(target.cacheSegments) && !downloads.active(target)
    ) {
      const finalPath = store.finalPath(target.cacheSegments);
      const peers = config.cache_peers.filter((peer) => !corruptOnPeer.has(`${peer}\0${finalPath}`));
      const found = await findOnPeers(peers, target.upstreamPath, {
        fetch: deps.fetch,
        timers,
        silent: silentPeers,
        onLoop: (peer) => {
          stats.peerLoops++;
          peerLoops.looped(peer);
        },
      });
      if (found.type === "hit") peerFirst.set(target.cacheSegments.join("/"), found.peer);
    }
    // The peer is for the download this request starts; none started (a client's download was running, or the
    // file arrived meanwhile): a later one must not try a peer that may have lost the file since.
    const answer = await serveTarget(req, target, ctx).finally(() =>
      peerFirst.delete(target.cacheSegments.join("/"))
    );
    if (recordsUsage) noteClientFetch(usage, req.method, target, answer.response.status);
    return finish(req, rawPath, answer, { started, info: c.env as ServeInfo | undefined });
  });
  hono.all("*", (c) => {
    throw methodError(c.req.method);
  });
  const answerError = errorAnswer(stats, deps.now);
  hono.onError((error, c) => {
    const remote = (c.env as ServeInfo | undefined)?.remoteAddr?.hostname;
    const client = remote === undefined ? undefined : clientAddress(remote, c.req.raw.headers);
    return answerError(error, {
      method: c.req.method,
      path: pathOf(c.req.raw),
      forwardedFor: client?.source === "forwarded" ? client.address : undefined,
    });
  });

  // Misses of package files skip routing too (see quick_misses.ts), where no request is judged one by one.
  const misses = config.trusted_proxies.length === 0 && config.cache_peers.length === 0 && !config.offline
    ? new QuickMisses({
      proxy: ctx,
      customRepoNames,
      remember: (rawPath, target) => quick.remember(rawPath, target),
      hit: (head, options) => quick.forHead(head, options),
      settle,
      answerError,
      noteFetch: recordsUsage ? (target, status) => noteClientFetch(usage, "GET", target, status) : undefined,
      now: deps.now,
    })
    : undefined;
  return {
    // A Via loop never reaches a cache hit (the node lacks the file). A trusted proxy's requests never come here
    // when allowed_clients is set (see admit): the client each one names, or the proxy when it names none, is
    // checked on the full path, which the head-only path does not do.
    quickAnswer: (head, options) => {
      const answer = quick.forHead(head, options);
      // A repeated hit is a client's fetch too (the answer is a plain GET of a known package file).
      if (answer && recordsUsage) {
        noteClientFetch(usage, "GET", parseRequestPath(targetPath(head.target), { customRepoNames }), 200);
      }
      return answer ?? misses?.forHead(head, options);
    },
    admit: config.allowed_clients.length === 0
      ? undefined
      : (remote) =>
        fromTrustedProxy(remote.hostname) ? "each_request" : allowed(remote.hostname) ? undefined : refusal,
    fetch: (req, info) => hono.fetch(req, info),
    pool,
    customPools,
    store,
    downloads,
    config,
    stats,
    packageIndex,
    startedAt,
    outage,
    prefetcher,
    health,
    nodeName,
    flush: () => usage.flush(),
  };
}

const refusal: Refusal = {
  status: 403,
  message: "This address is not in allowed_clients; ask the proxy's administrator to add it",
};

/** The refusal of a request whose `Forwarded` and `X-Forwarded-For` name different clients (see forwarded.ts). */
const CONFLICTING_CLIENTS = "Forwarded and X-Forwarded-For name different clients, so one of them was not " +
  "written by the balancer; send neither header (the balancer in trusted_proxies writes one)";

/** `response` with a `Content-Length` header, measured from its body when it has none (the body is read). */
async function withLength(response: Response): Promise<Response> {
  if (response.body === null || response.headers.has("content-length")) return response;
  const bytes = new Uint8Array(await response.arrayBuffer());
  const headers = new Headers(response.headers);
  headers.set("Content-Length", String(bytes.length));
  return new Response(bytes, { status: response.status, statusText: response.statusText, headers });
}

/**
 * The path of a request as the client sent it (before `?`): from its raw target when flexo's own connection
 * layer made it, otherwise from its URL (a request made elsewhere, in tests).
 */
export function pathOf(req: Request): string {
  return targetPath(rawTargetOf(req) ?? req.url);
}
