/**
 * A scripted fetch for unit tests: each mirror is a function from request to a fake answer, with bodies that
 * can stall, drop or trickle, and that stop when the request is aborted as a real fetch would.
 *
 * @module
 */

/** How a fake mirror answers one request. */
export interface FakeAnswer {
  /** HTTP status; default 200. */
  status?: number;
  /** Response headers; `Content-Length` is added from `body` when missing. */
  headers?: Record<string, string>;
  /** The body bytes (the whole answer, already cut to the range if any). */
  body?: Uint8Array;
  /** Send this many bytes of the body, then hang until aborted. */
  stallAfter?: number;
  /** Send this many bytes of the body, then fail the stream (connection reset). */
  dropAfter?: number;
  /** Bytes per chunk (default 64 KiB). */
  chunkSize?: number;
  /** Milliseconds between chunks. */
  chunkDelayMs?: number;
  /** Milliseconds before the headers. */
  delayMs?: number;
  /** Send no `Content-Length` (a body framed by its end, as a chunked one). */
  noContentLength?: boolean;
}

/** A recorded request. */
export interface FakeRequest {
  /** The URL asked for. */
  url: string;
  /** HTTP method. */
  method: string;
  /** The request headers. */
  headers: Headers;
}

/** Builds a fetch whose answers come from `route(url, request)`; records every request in `requests`. */
export function fakeFetch(
  route: (url: string, req: FakeRequest) => FakeAnswer | "refuse",
): { fetch: typeof fetch; requests: FakeRequest[] } {
  const requests: FakeRequest[] = [];
  const fetchImpl = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = String(input instanceof Request ? input.url : input);
    const req = { url, method: init?.method ?? "GET", headers: new Headers(init?.headers) };
    requests.push(req);
    const signal = init?.signal ?? undefined;
    const answer = route(url, req);
    if (answer === "refuse") throw new TypeError("error sending request: connection refused");
    if (answer.delayMs) await sleep(answer.delayMs, signal);
    signal?.throwIfAborted();
    const body = answer.body ?? new Uint8Array();
    const headers = new Headers(answer.headers);
    if (!headers.has("content-length") && answer.body && !answer.noContentLength) {
      headers.set("content-length", String(body.byteLength));
    }
    const status = answer.status ?? 200;
    if (req.method === "HEAD" || status === 304 || status === 204) {
      return new Response(null, { status, headers });
    }
    const chunk = answer.chunkSize ?? 64 * 1024;
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (signal?.aborted) {
          controller.error(signal.reason);
          return;
        }
        if (answer.dropAfter !== undefined && sent >= answer.dropAfter) {
          controller.error(new TypeError("error reading a body from connection: connection reset"));
          return;
        }
        if (answer.stallAfter !== undefined && sent >= answer.stallAfter) {
          await new Promise<void>((_, reject) => {
            signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
          }).catch((error) => controller.error(error));
          return;
        }
        if (sent >= body.byteLength) {
          controller.close();
          return;
        }
        if (answer.chunkDelayMs) {
          try {
            await sleep(answer.chunkDelayMs, signal);
          } catch (error) {
            controller.error(error);
            return;
          }
        }
        let end = Math.min(body.byteLength, sent + chunk);
        if (answer.stallAfter !== undefined) end = Math.min(end, Math.max(answer.stallAfter, sent + 1));
        if (answer.dropAfter !== undefined) end = Math.min(end, Math.max(answer.dropAfter, sent + 1));
        controller.enqueue(body.slice(sent, end));
        sent = end;
      },
    });
    return new Response(stream, { status, headers });
  };
  return { fetch: fetchImpl as typeof fetch, requests };
}

/** One upstream body that the test writes chunk by chunk. */
export interface Gate {
  /** Sends these bytes. */
  push(bytes: Uint8Array): void;
  /** Ends the body cleanly. */
  end(): void;
  /** Fails the body, as a reset connection does. */
  fail(error: Error): void;
}

/** A mirror that answers 200 with `headers` and a body the test controls through the returned gate. */
export function gatedMirror(headers: Record<string, string>): { fetch: typeof fetch; gate: Gate } {
  const { body, gate } = gatedBody();
  const fetchImpl = (_input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    failOnAbort(init?.signal, gate);
    return Promise.resolve(new Response(body, { headers }));
  };
  return { fetch: fetchImpl as typeof fetch, gate };
}

/** One request to {@linkcode gatedFetch}: what was asked, and the gate of its body. */
export interface GatedRequest extends Gate {
  /** The URL asked for. */
  url: string;
  /** The request headers. */
  headers: Headers;
}

/**
 * A fetch that answers every request at once with the status and headers `head(request)` gives and a body of
 * its own, which the test writes through the request's gate. The gates are in `gates`, in request order.
 */
export function gatedFetch(
  head: (req: FakeRequest) => { status?: number; headers?: Record<string, string> },
): { fetch: typeof fetch; gates: GatedRequest[] } {
  const gates: GatedRequest[] = [];
  const fetchImpl = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const { body, gate } = gatedBody();
    failOnAbort(init?.signal, gate);
    const req = { url: String(input), method: init?.method ?? "GET", headers: new Headers(init?.headers) };
    gates.push({ url: req.url, headers: req.headers, ...gate });
    return Promise.resolve(new Response(body, head(req)));
  };
  return { fetch: fetchImpl as typeof fetch, gates };
}

function gatedBody(): { body: ReadableStream<Uint8Array>; gate: Gate } {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
  });
  return {
    body,
    gate: {
      push: (bytes) => controller.enqueue(bytes),
      end: () => controller.close(),
      fail: (error) => controller.error(error),
    },
  };
}

/** Errors the body when the request is aborted, as a real fetch does. */
function failOnAbort(signal: AbortSignal | null | undefined, gate: Gate): void {
  signal?.addEventListener("abort", () => {
    try {
      gate.fail(signal.reason);
    } catch {
      // the body has ended already
    }
  }, { once: true });
}

/**
 * The status and headers of a well-behaved mirror for a file of `size` bytes: 206 with `Content-Range` for a
 * `Range: bytes=N-` request, else 200 with `Content-Length`.
 */
export function rangeHead(
  size: number,
  req: FakeRequest,
): { status: number; headers: Record<string, string> } {
  const start = rangeStart(req);
  if (start === undefined) return { status: 200, headers: { "content-length": String(size) } };
  return { status: 206, headers: { "content-range": `bytes ${start}-${size - 1}/${size}` } };
}

/** Serves `data` honouring a `Range: bytes=N-` header, as a well-behaved mirror does. */
export function serveBytes(data: Uint8Array, req: FakeRequest, extra: Partial<FakeAnswer> = {}): FakeAnswer {
  const lastModified = "Tue, 14 Nov 2023 22:13:20 GMT";
  const start = rangeStart(req);
  if (start !== undefined) {
    return {
      status: 206,
      headers: {
        "content-range": `bytes ${start}-${data.byteLength - 1}/${data.byteLength}`,
        "last-modified": lastModified,
      },
      body: data.slice(start),
      ...extra,
    };
  }
  return { headers: { "last-modified": lastModified }, body: data, ...extra };
}

/** The N of a `Range: bytes=N-` header, undefined without one. */
function rangeStart(req: FakeRequest): number | undefined {
  const range = req.headers.get("range")?.match(/^bytes=(\d+)-$/);
  return range ? Number(range[1]) : undefined;
}

/** Deterministic pseudo-random bytes. */
export function testBytes(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}
