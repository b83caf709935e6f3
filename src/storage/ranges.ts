import { StorageError } from "./errors.ts";
import type { ByteRange } from "./types.ts";

function isOffset(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

/** Throws `INVALID_RANGE` unless `start` and `end` are non-negative integers with `start <= end`. */
export function checkRange(key: string, range: ByteRange): void {
  if (!isOffset(range.start) || !isOffset(range.end) || range.end < range.start) {
    throw new StorageError(
      "INVALID_RANGE",
      `Invalid byte range ${range.start}-${range.end} for ${JSON.stringify(key)}: expected integers with 0 <= start <= end (end is inclusive).`,
      { key },
    );
  }
}

/** Throws `INVALID_RANGE` unless `offset` and `length` are non-negative integers. */
export function checkReadWindow(key: string, offset: number, length: number): void {
  if (!isOffset(offset) || !isOffset(length)) {
    throw new StorageError(
      "INVALID_RANGE",
      `Invalid read of ${length} bytes at offset ${offset} from ${JSON.stringify(key)}: expected non-negative integers.`,
      { key },
    );
  }
}

/** Builds the error for a range that starts at or after the end of an object of `size` bytes. */
export function rangeNotSatisfiable(
  key: string,
  start: number,
  end: number,
  size: number,
): StorageError {
  return new StorageError(
    "INVALID_RANGE",
    `Byte range ${start}-${end} is outside ${JSON.stringify(key)}, which has ${size} bytes.`,
    { key },
  );
}
