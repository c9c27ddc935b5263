/**
 * Cache peers (`cache_peers`): other flexo nodes of a cluster that may already hold a package. On a miss of a
 * package or its signature a node asks every peer at once with `Cache-Control: only-if-cached` (a peer answers
 * from its cache or 504 at once, see src/app/only_if_cached.ts), waits at most a short time, and downloads from
 * the first peer that has the file before any mirror; the file is verified like any download. So a node that
 * joins, or replaces a dead one, fills itself from the cluster rather than from the internet.
 *
 * @module
 */

/** Milliseconds a miss waits for the peers before it goes to the mirrors. */
export const PEER_WAIT_MS = 500;

/** What the peers said about one file. */
export type PeerLookup = { type: "hit"; peer: string } | { type: "miss" };

/** Timers, injected so that tests drive them. */
export interface PeerTimers {
  setTimeout: (fn: () => void, ms: number) => number;
  clearTimeout: (id: number) => void;
}

/**
 * Asks every peer (base URLs ending in `/`) for `upstreamPath` with a HEAD request, in parallel; resolves with
 * the first that answers 200, or a miss when none does within `waitMs`. `fetch` must add only-if-cached for
 * peers (see {@linkcode fetchWithPeerRules}).
 */
export function findOnPeers(
  peers: readonly string[],
  upstreamPath: string,
  options: { fetch: typeof fetch; waitMs?: number; timers?: PeerTimers },
): Promise<PeerLookup> {
  if (peers.length === 0) return Promise.resolve({ type: "miss" });
  const timers = options.timers ?? globalThis;
  const abort = new AbortController();
  return new Promise<PeerLookup>((resolve) => {
    let pending = peers.length;
    const done = (lookup: PeerLookup) => {
      timers.clearTimeout(timer);
      abort.abort();
      resolve(lookup);
    };
    const timer = timers.setTimeout(() => done({ type: "miss" }), options.waitMs ?? PEER_WAIT_MS);
    for (const peer of peers) {
      options.fetch(peer + upstreamPath, { method: "HEAD", signal: abort.signal }).then(
        async (response) => {
          await response.body?.cancel();
          if (response.status === 200) done({ type: "hit", peer });
          else if (--pending === 0) done({ type: "miss" });
        },
        () => {
          if (--pending === 0) done({ type: "miss" });
        },
      );
    }
  });
}

/**
 * `fetch` that adds `Cache-Control: only-if-cached` to requests for a peer's files: a peer must never fetch from
 * the internet on another node's behalf (the node goes to the mirrors itself when no peer has the file).
 */
export function fetchWithPeerRules(inner: typeof fetch, peers: readonly string[]): typeof fetch {
  if (peers.length === 0) return inner;
  return (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (!peers.some((peer) => url.startsWith(peer))) return inner(input, init);
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    headers.set("cache-control", "only-if-cached");
    return inner(input, { ...init, headers });
  };
}
