/**
 * Cache peers (`cache_peers`): other flexo nodes of a cluster that may already hold a package. On a miss of a
 * package or its signature a node asks every peer at once with `Cache-Control: only-if-cached` (a peer answers
 * from its cache or 504 at once, see src/app/only_if_cached.ts), waits at most a short time, and downloads from
 * the first peer that has the file before any mirror; the file is verified like any download. So a node that
 * joins, or replaces a dead one, fills itself from the cluster rather than from the internet.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { redactUrl } from "../redact_url.ts";
import { SYSTEM_TIMERS, type Timers } from "./transfer.ts";

const log = getLogger(["flexo", "peers"]);

/** Milliseconds a miss waits for the peers before it goes to the mirrors. */
export const PEER_WAIT_MS = 500;

/** Milliseconds a peer that let a lookup wait {@linkcode PEER_WAIT_MS} is left out of lookups. */
export const SILENT_PEER_HOLD_MS = 30_000;

/** What the peers said about one file. */
export type PeerLookup = { type: "hit"; peer: string } | { type: "miss" };

/**
 * Peers that let a lookup wait its whole wait without an answer (down behind a firewall that drops packets,
 * or overloaded): each is left out of lookups for a hold, so that one silent peer does not add the wait to
 * every miss of the node; after the hold the next lookup asks it again.
 */
export class SilentPeers {
  #now: () => number;
  #holdMs: number;
  #until = new Map<string, number>();

  /** A record with the clock `now` and a hold of `holdMs` (default {@linkcode SILENT_PEER_HOLD_MS}). */
  constructor(options: { now: () => number; holdMs?: number }) {
    this.#now = options.now;
    this.#holdMs = options.holdMs ?? SILENT_PEER_HOLD_MS;
  }

  /** The peers of `peers` that are not on hold now. */
  askable(peers: readonly string[]): string[] {
    const now = this.#now();
    return peers.filter((peer) => (this.#until.get(peer) ?? 0) <= now);
  }

  /** `peer` let a lookup wait `waitedMs` without an answer: it is on hold from now on. */
  heldUp(peer: string, waitedMs = PEER_WAIT_MS): void {
    if (!this.#until.has(peer)) {
      log.warn(
        "Cache peer {peer} did not answer within {waitedMs} ms: misses go to the mirrors without waiting for it " +
          "for {holdSecs} s; check that it runs and that this node can reach it",
        { peer: redactUrl(peer), waitedMs, holdSecs: this.#holdMs / 1000 },
      );
    }
    this.#until.set(peer, this.#now() + this.#holdMs);
  }

  /** `peer` answered: it is waited for again. */
  answered(peer: string): void {
    this.#until.delete(peer);
  }
}

/** Milliseconds between two warnings about the same peer answering 508 to lookups. */
export const PEER_LOOP_WARNING_INTERVAL_MS = 10 * 60_000;

/**
 * Peers that answered a lookup `508 Loop Detected`. A peer answers so when this node's `Via` names the peer
 * itself: the two nodes have the same `node_name` (one configuration copied to every node), or `cache_peers`
 * lists this node. Such a peer never helps, and without a word nobody would know: each one is warned about at
 * most once per {@linkcode PEER_LOOP_WARNING_INTERVAL_MS}, naming the cause and the fix.
 */
export class PeerLoops {
  #now: () => number;
  #intervalMs: number;
  #nodeName: string;
  #warnedAt = new Map<string, number>();

  /** A record for the node called `nodeName`, with the clock `now`. */
  constructor(options: { now: () => number; nodeName: string; intervalMs?: number }) {
    this.#now = options.now;
    this.#nodeName = options.nodeName;
    this.#intervalMs = options.intervalMs ?? PEER_LOOP_WARNING_INTERVAL_MS;
  }

  /** `peer` answered a lookup 508: warns, unless it was warned about within the interval. */
  looped(peer: string): void {
    const now = this.#now();
    const last = this.#warnedAt.get(peer);
    if (last !== undefined && now - last < this.#intervalMs) return;
    this.#warnedAt.set(peer, now);
    log.warn(
      "Cache peer {peer} answered 508 Loop Detected to a lookup: it takes this node's request for one of its own, " +
        "because it has the same node_name ({nodeName}; one configuration copied to every node?) or cache_peers " +
        "lists this node itself. The peers never help each other so: every node needs its own node_name (or " +
        "FLEXO_NODE_NAME), and cache_peers lists the other nodes only. (Said at most every {minutes} minutes.)",
      { peer: redactUrl(peer), nodeName: this.#nodeName, minutes: this.#intervalMs / 60_000 },
    );
  }
}

/**
 * Asks every peer (base URLs ending in `/`) for `upstreamPath` with a HEAD request, in parallel; resolves with
 * the first that answers 200, or a miss when none does within `waitMs`. `fetch` must add only-if-cached for
 * peers (see {@linkcode fetchWithPeerRules}). With `silent`, peers on hold are not asked, and the peers still
 * silent when the wait ends are put on hold. `onLoop` is called for each peer that answers 508 (see
 * {@linkcode PeerLoops}).
 */
export function findOnPeers(
  peers: readonly string[],
  upstreamPath: string,
  options: {
    fetch: typeof fetch;
    waitMs?: number;
    timers?: Timers;
    silent?: SilentPeers;
    onLoop?: (peer: string) => void;
  },
): Promise<PeerLookup> {
  const asked = options.silent?.askable(peers) ?? peers;
  if (asked.length === 0) return Promise.resolve({ type: "miss" });
  const timers = options.timers ?? SYSTEM_TIMERS;
  const waitMs = options.waitMs ?? PEER_WAIT_MS;
  const abort = new AbortController();
  const silent = new Set(asked);
  return new Promise<PeerLookup>((resolve) => {
    let pending = asked.length;
    let over = false;
    const done = (lookup: PeerLookup) => {
      if (over) return;
      over = true;
      timers.clearTimer(timer);
      abort.abort();
      resolve(lookup);
    };
    const timer = timers.setTimer(() => {
      for (const peer of silent) options.silent?.heldUp(peer, waitMs);
      done({ type: "miss" });
    }, waitMs);
    for (const peer of asked) {
      options.fetch(peer + upstreamPath, { method: "HEAD", signal: abort.signal }).then(
        async (response) => {
          silent.delete(peer);
          options.silent?.answered(peer);
          await response.body?.cancel();
          if (response.status === 508) options.onLoop?.(peer);
          if (response.status === 200) done({ type: "hit", peer });
          else if (--pending === 0) done({ type: "miss" });
        },
        () => {
          // Refused or reset: an answer of sorts, at once. Aborted after the lookup ended: not silent either.
          silent.delete(peer);
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
