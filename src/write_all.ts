/**
 * The one way flexo writes a whole buffer to a file, a socket or the log's output, whose writes may each take
 * only part of it.
 *
 * @module
 */

/** Something that takes some of the bytes it is given and says how many: a `Deno.FsFile`, a `Deno.Conn`. */
export interface PartWriter {
  write(bytes: Uint8Array): Promise<number>;
}

/**
 * Writes all of `bytes` to `to`, a part at a time.
 *
 * @throws {Error} what a write throws, or when a write takes no bytes (which would never end).
 */
export async function writeAll(to: PartWriter, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.byteLength;) {
    const took = await to.write(bytes.subarray(done));
    if (took <= 0) throw new Error(tookNone(bytes.byteLength - done));
    done += took;
  }
}

/**
 * Writes all of `bytes` to `to` at once, on the event loop (a part at a time).
 *
 * @throws {Error} what a write throws, or when a write takes no bytes (which would never end).
 */
export function writeAllSync(to: { writeSync(bytes: Uint8Array): number }, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.byteLength;) {
    const took = to.writeSync(bytes.subarray(done));
    if (took <= 0) throw new Error(tookNone(bytes.byteLength - done));
    done += took;
  }
}

function tookNone(left: number): string {
  return `a write took none of the ${left} bytes left`;
}
