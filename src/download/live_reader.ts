/**
 * Streams of file bytes for clients: from a complete cached file, or following a download as it is written,
 * without busy polling (a reader that has caught up waits for the download's next change).
 *
 * @module
 */

import type { Download } from "./download.ts";
import { closeQuietly } from "../close_quietly.ts";

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
    closeQuietly(file);
    file = undefined;
  };
  return new ReadableStream<Uint8Array>({
    type: "bytes",
    async pull(controller) {
      while (true) {
        // What may be sent is the download's to say (see Download.releasable): the last byte of the range only
        // once the file is verified, so that a client sees a failed transfer, never a clean end, when the bytes are
        // wrong.
        const end = download.outcome();
        const last = download.total === undefined ? range.end : Math.min(range.end, download.total - 1);
        const available = download.releasable(last + 1);
        if (position > last) {
          close();
          controller.close();
          return;
        }
        if (position < available) {
          if (file === undefined) {
            file = await openEither(download);
            if (cancelled) return close();
            if (file === undefined) {
              controller.error(new Error(`${download.finalPath} disappeared while being read`));
              return;
            }
            // Only this stream reads through this handle, so after one seek its offset follows `position`.
            if (position > 0) await file.seek(position, Deno.SeekMode.Start).catch(closeAndThrow(close));
          }
          const want = Math.min(READ_CHUNK, available - position, last - position + 1);
          const buffer = new Uint8Array(want);
          const read = await file.read(buffer).catch(closeAndThrow(close));
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
        if (end.type === "failed") {
          close();
          controller.error(end.error);
          return;
        }
        if (end.type !== "running") {
          // Complete with an unknown length, or ended short of the requested range.
          close();
          if (end.type === "complete" && (download.total === undefined || range.end === Infinity)) {
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

/**
 * A rejection handler that closes a stream's file and passes the error on: a stream that errors is not
 * cancelled, so its file would stay open.
 */
function closeAndThrow(close: () => void): (error: unknown) => never {
  return (error) => {
    close();
    throw error;
  };
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
    closeQuietly(file);
    file = undefined;
  };
  return new ReadableStream<Uint8Array>({
    type: "bytes",
    async pull(controller) {
      if (file === undefined) {
        file = await Deno.open(path, { read: true });
        if (range.start > 0) await file.seek(range.start, Deno.SeekMode.Start).catch(closeAndThrow(close));
      }
      const buffer = new Uint8Array(Math.min(READ_CHUNK, remaining));
      const read = await file.read(buffer).catch(closeAndThrow(close));
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
