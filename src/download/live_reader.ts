/**
 * Streams of file bytes for clients: from a complete cached file, or following a download as it is written,
 * without busy polling (a reader that has caught up waits for the download's next change).
 *
 * @module
 */

import type { Download } from "./download.ts";

/** Bytes per read from disk. */
export const READ_CHUNK = 256 * 1024;

/**
 * A stream of bytes `start..end` (inclusive; `end` may be Infinity for "to the end") of a file that a download is
 * still writing. It ends when the download has written `end`, and errors if the download fails before that.
 */
export function followDownload(
  download: Download,
  range: { start: number; end: number },
  options: { onBytes?: (bytes: number) => void } = {},
): ReadableStream<Uint8Array> {
  let file: Deno.FsFile | undefined;
  let position = range.start;
  // A client that goes away while pull() waits must not leave a handle that pull() opens after cancel().
  let cancelled = false;
  const close = () => {
    try {
      file?.close();
    } catch {
      // already closed
    }
    file = undefined;
  };
  return new ReadableStream<Uint8Array>({
    type: "bytes",
    async pull(controller) {
      while (true) {
        const last = download.total === undefined ? range.end : Math.min(range.end, download.total - 1);
        if (position > last) {
          // The end of the file is only final once the download has verified and committed it: a client must
          // see a failed transfer, never a clean end, when the bytes turn out to be wrong.
          const endOfFile = download.total !== undefined && last === download.total - 1;
          if (endOfFile && !download.ended) {
            await download.changed();
            if (cancelled) return close();
            continue;
          }
          close();
          if (endOfFile && download.state === "failed") {
            controller.error(download.error ?? new Error("download failed"));
          } else {
            controller.close();
          }
          return;
        }
        // The file's last byte goes out only once the download has verified and committed the file: a client of a
        // known length whose bytes turn out wrong must get a short response (an error), never a complete one.
        const holdBack = download.total !== undefined && download.state !== "complete"
          ? download.total - 1
          : Infinity;
        const available = Math.min(download.written, holdBack);
        if (position < available) {
          if (file === undefined) {
            file = await openEither(download);
            if (cancelled) return close();
            if (file === undefined) {
              controller.error(new Error(`${download.finalPath} disappeared while being read`));
              return;
            }
            // Only this stream reads through this handle, so after one seek its offset follows `position`.
            if (position > 0) await file.seek(position, Deno.SeekMode.Start);
          }
          const want = Math.min(READ_CHUNK, available - position, last - position + 1);
          const buffer = new Uint8Array(want);
          const read = await file.read(buffer);
          if (cancelled) return close();
          if (read === null || read === 0) {
            controller.error(new Error(`${download.partialPath} is shorter than expected`));
            close();
            return;
          }
          position += read;
          options.onBytes?.(read);
          controller.enqueue(buffer.subarray(0, read));
          return;
        }
        if (download.state === "failed") {
          close();
          controller.error(download.error ?? new Error("download failed"));
          return;
        }
        if (download.ended) {
          // Complete with an unknown length, or ended short of the requested range.
          close();
          if (download.state === "complete" && (download.total === undefined || range.end === Infinity)) {
            controller.close();
          } else {
            controller.error(new Error(`download of ${download.finalPath} ended before byte ${position}`));
          }
          return;
        }
        await download.changed();
        if (cancelled) return close();
      }
    },
    cancel() {
      cancelled = true;
      close();
    },
  });
}

/** Opens the partial file, or the complete file if the download has been committed in between. */
async function openEither(download: Download): Promise<Deno.FsFile | undefined> {
  for (const path of [download.partialPath, download.finalPath, download.partialPath]) {
    try {
      return await Deno.open(path, { read: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return undefined;
}

/**
 * A stream of bytes `start..end` (inclusive) of a complete file, which opens the file at its first read: a
 * response whose bytes the server sends itself (sendfile) never opens it here, so a file is opened once per
 * response.
 */
export function readFileRange(
  path: string,
  range: { start: number; end: number; size: number },
): ReadableStream<Uint8Array> {
  let file: Deno.FsFile | undefined;
  let remaining = range.end - range.start + 1;
  const close = () => {
    try {
      file?.close();
    } catch {
      // already closed
    }
    file = undefined;
  };
  return new ReadableStream<Uint8Array>({
    type: "bytes",
    async pull(controller) {
      if (file === undefined) {
        file = await Deno.open(path, { read: true });
        if (range.start > 0) await file.seek(range.start, Deno.SeekMode.Start);
      }
      const buffer = new Uint8Array(Math.min(READ_CHUNK, remaining));
      const read = await file.read(buffer);
      if (read === null || read === 0) {
        close();
        controller.error(new Error(`${path} is shorter than expected`));
        return;
      }
      remaining -= read;
      controller.enqueue(buffer.subarray(0, read));
      if (remaining <= 0) {
        close();
        controller.close();
      }
    },
    cancel: close,
  });
}
