/** HTTP conditional and range request headers for artifact downloads (RFC 9110, sections 13 and 14). */

import type { ByteRange } from "../storage/types.ts";

export type RangeResult =
  /** Serve the whole representation: no Range header, or one this server ignores. */
  { kind: "full" } | { kind: "partial"; range: ByteRange } | { kind: "unsatisfiable" };

const SINGLE_RANGE = /^bytes=(\d*)-(\d*)$/;

/**
 * Interprets a `Range` header for a representation of `size` bytes. Only one byte range is
 * served. A header with several ranges, another unit or bad syntax is ignored and the whole
 * artifact is sent, as RFC 9110 (section 14.2) allows.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: "full" };
  const match = SINGLE_RANGE.exec(header.trim());
  if (!match) return { kind: "full" };
  const [, first, last] = match;
  if (first === "" && last === "") return { kind: "full" };

  if (first === "") {
    // Suffix range `bytes=-N`: the last N bytes.
    const length = Number(last);
    if (length === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "partial", range: { start: Math.max(0, size - length), end: size - 1 } };
  }
  const start = Number(first);
  // An open range `bytes=N-` runs to the end, whatever the size.
  const end = last === "" ? Number.MAX_SAFE_INTEGER : Number(last);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start)
    return { kind: "full" };
  if (start >= size) return { kind: "unsatisfiable" };
  return { kind: "partial", range: { start, end: Math.min(end, size - 1) } };
}

/** Entity tags listed in an `If-None-Match` or `If-Range` header, weak prefixes removed. */
function entityTags(header: string): string[] {
  return header.split(",").map((tag) => tag.trim().replace(/^W\//, ""));
}

/** Returns true when `If-None-Match` matches `etag` by weak comparison, so the response is 304. */
export function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const tags = entityTags(header);
  return tags.includes("*") || tags.includes(etag);
}

/** Returns true when a `Range` header applies: no `If-Range`, or one equal to the strong `etag`. */
export function rangeApplies(ifRange: string | undefined, etag: string): boolean {
  return ifRange === undefined || ifRange.trim() === etag;
}
