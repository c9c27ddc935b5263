/**
 * What the status page says of the counters an operator has to act on, and what to do about each: connections
 * refused at `max_connections`, requests the server refused before the app, lookups that looped between two
 * nodes of one `node_name`, and transfers overtaken because a mirror trickled. A counter at zero says nothing:
 * the page stays quiet until there is something to do.
 *
 * Like status_page_script.ts, {@linkcode statusNotices} runs in the browser: the page embeds its source text
 * and hands it to the page's script. It must stay self-contained (its parameters, its own declarations and
 * the language's globals only; types are fine) and pure, so that a test can call it here with a report.
 *
 * @module
 */

import type { OvertakeCounts, StatusReport } from "./status_report.ts";

/** One thing to tell: `key` names it (the page's `data-key`), `text` says what happened, `hint` what to do. */
export interface StatusNotice {
  key: string;
  text: string;
  hint: string;
}

/** The notices of a report, by where the page shows them. */
export interface StatusNotices {
  /** Under "Requests by result": connections refused at `max_connections`, requests refused by status. */
  requests: StatusNotice[];
  /** In the card of the cache peers: peer lookups that looped. */
  peers: StatusNotice[];
  /** Below each pool's mirror table, by pool as in `/metrics`: `official`, `custom_repo/NAME`. */
  pools: Record<string, StatusNotice[]>;
}

/** The notices of report `s`: only counters above zero, each with a hint. Self-contained: see the module. */
export function statusNotices(s: StatusReport): StatusNotices {
  "use strict";
  const count = (n: number): string => Number(n).toLocaleString("en");
  const plural = (n: number, one: string, many: string): string => count(n) + " " + (n === 1 ? one : many);

  const requests: StatusNotice[] = [];
  const refused = s.connections.refused;
  if (refused > 0) {
    requests.push({
      key: "connections-refused",
      text: plural(refused, "connection", "connections") + " refused: max_connections were open, each " +
        "answering a request, so clients saw their connections dropped",
      hint: "Raise max_connections (and the open-files limit), or spread the clients over more nodes",
    });
  }
  const why: Record<string, [string, string]> = {
    "403": [
      "clients outside allowed_clients",
      "If they should be served, add their network to allowed_clients",
    ],
    "400": [
      "request heads flexo could not read",
      "Pacman sends none: a scanner or a client that is not HTTP",
    ],
    "414": ["request targets too long", "Pacman sends none: a scanner or a misconfigured client"],
    "431": ["request heads too large", "Pacman sends none: a scanner or a misconfigured client"],
    "405": ["methods not served", "flexo serves GET and HEAD only: check what the client is"],
    "501": ["methods not served", "flexo serves GET and HEAD only: check what the client is"],
    "505": ["HTTP versions not supported", "flexo speaks HTTP/1.1: check what the client is"],
  };
  const statuses = Object.entries(s.refusedRequests).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  for (const [status, n] of statuses) {
    const [what, hint] = why[status] ?? ["refused by the server", "The log at debug level says why"];
    requests.push({
      key: "refused-" + status,
      text: plural(n, "request", "requests") + " refused with " + status + " before the app: " + what,
      hint,
    });
  }

  const peers: StatusNotice[] = [];
  if (s.node.peerLoops > 0) {
    peers.push({
      key: "peer-loops",
      text: plural(s.node.peerLoops, "peer lookup", "peer lookups") + " looped (508): a cache peer has " +
        "this node's node_name (" + s.node.name + ") or is this node",
      hint: "Give each node its own node_name, and list only the other nodes in cache_peers",
    });
  }

  const overtakes = (o: OvertakeCounts, faster: string): StatusNotice[] => {
    if (o.probes === 0 && o.overtaken === 0) return [];
    return [{
      key: "overtakes",
      text: "Overtaking: " + plural(o.probes, "probe", "probes") + " of the next mirror while a package " +
        "trickled, " + plural(o.overtaken, "transfer", "transfers") + " moved to a faster mirror",
      hint: o.overtaken === 0 ? "The next mirror was never faster: nothing to do" : faster,
    }];
  };
  const pools: Record<string, StatusNotice[]> = {
    official: overtakes(
      s.mirrors.overtakes,
      "The first mirrors were slow: list faster ones in mirrors_predefined, or narrow [mirrors_auto] " +
        "allowed_countries",
    ),
  };
  for (const repo of s.customRepos) {
    pools["custom_repo/" + repo.name] = overtakes(
      repo.overtakes,
      "A url of custom_repo " + repo.name + " was slow: list a faster one first",
    );
  }
  return { requests, peers, pools };
}
