import { StorageError } from "./errors.ts";
import { checkReadWindow } from "./ranges.ts";
import type { Storage } from "./types.ts";

/** Random-access view of one stored object, as the checkpoint reader consumes it. */
export interface ByteSource {
  /** Object size in bytes. */
  readonly size: number;
  /** Reads exactly `length` bytes at `offset`; the window must lie inside `[0, size)`. */
  read(offset: number, length: number): Promise<Buffer>;
}

/**
 * Wraps `storage.read` for the object under `key`, whose size the caller already knows (from
 * `head` or `list`). Reads past `size` are rejected here with `INVALID_RANGE`, without a request.
 */
export function byteSource(storage: Storage, key: string, size: number): ByteSource {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(
      `Invalid size ${size} for byte source ${JSON.stringify(key)}: expected a non-negative integer.`,
    );
  }
  return {
    size,
    async read(offset: number, length: number): Promise<Buffer> {
      checkReadWindow(key, offset, length);
      if (offset + length > size) {
        throw new StorageError(
          "INVALID_RANGE",
          `Read of ${length} bytes at offset ${offset} runs past the end of ${JSON.stringify(key)}, which has ${size} bytes.`,
          { key },
        );
      }
      return storage.read(key, offset, length);
    },
  };
}
