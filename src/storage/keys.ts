import { StorageError } from "./errors.ts";

/**
 * First key segment reserved for the storage layer's own files: temporary uploads and, on local
 * disk, SHA-256 sidecars. Callers cannot read or write keys under it.
 */
export const RESERVED_SEGMENT = ".pifa";

/** S3's limit on a key's UTF-8 length. */
export const MAX_KEY_BYTES = 1024;

/** Common filesystem limit on one path component (ext4, XFS, btrfs). */
const MAX_SEGMENT_BYTES = 255;

// C0 control characters and DEL. NUL would truncate a path in system calls, and the others turn
// up in file names and log lines by mistake.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

const KEY_FORM = 'keys are relative paths such as "jobs/42/model.bin"';

function invalidKey(kind: "key" | "prefix", value: string, reason: string): StorageError {
  return new StorageError(
    "INVALID_KEY",
    `Invalid storage ${kind} ${JSON.stringify(value)}: ${reason}; ${KEY_FORM}.`,
    {
      key: value,
    },
  );
}

function checkCharacters(kind: "key" | "prefix", value: string): void {
  if (value.startsWith("/")) {
    throw invalidKey(kind, value, "it must not start with /");
  }
  if (value.includes("\\")) {
    throw invalidKey(kind, value, "backslashes are not allowed");
  }
  if (CONTROL_CHARACTER.test(value)) {
    throw invalidKey(kind, value, "control characters (including NUL) are not allowed");
  }
  if (Buffer.byteLength(value) > MAX_KEY_BYTES) {
    throw invalidKey(kind, value, `it is longer than ${MAX_KEY_BYTES} bytes in UTF-8`);
  }
}

function checkSegment(kind: "key" | "prefix", value: string, segment: string, index: number): void {
  if (segment === "") {
    throw invalidKey(
      kind,
      value,
      "empty segments (leading, trailing or doubled /) are not allowed",
    );
  }
  if (segment === "." || segment === "..") {
    throw invalidKey(kind, value, `segment "${segment}" is not allowed`);
  }
  if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) {
    throw invalidKey(kind, value, `segment is longer than ${MAX_SEGMENT_BYTES} bytes in UTF-8`);
  }
  if (index === 0 && segment === RESERVED_SEGMENT) {
    throw invalidKey(
      kind,
      value,
      `the first segment "${RESERVED_SEGMENT}" is reserved for the storage layer`,
    );
  }
}

/** Throws an `INVALID_KEY` error unless `key` is a relative `/`-separated path with no empty, `.`, `..` or reserved segment. */
export function validateKey(key: string): string {
  if (typeof key !== "string" || key === "") {
    throw invalidKey("key", String(key), "it is empty");
  }
  checkCharacters("key", key);
  key.split("/").forEach((segment, index) => {
    checkSegment("key", key, segment, index);
  });
  return key;
}

/**
 * Throws an `INVALID_KEY` error unless `prefix` is empty or the start of a valid key. The last
 * segment may be partial or empty (a trailing `/`); every segment before it follows the key rules.
 */
export function validatePrefix(prefix: string): string {
  if (typeof prefix !== "string") {
    throw invalidKey("prefix", String(prefix), "it is not a string");
  }
  if (prefix === "") {
    return prefix;
  }
  checkCharacters("prefix", prefix);
  const segments = prefix.split("/");
  segments.slice(0, -1).forEach((segment, index) => {
    checkSegment("prefix", prefix, segment, index);
  });
  return prefix;
}

/** Orders keys by UTF-16 code units, as JavaScript string comparison does. */
export function compareKeys(a: string, b: string): number {
  if (a < b) {
    return -1;
  }
  return a > b ? 1 : 0;
}

/** Returns true for keys inside the reserved area, which listings must hide. */
export function isReservedKey(key: string): boolean {
  return key === RESERVED_SEGMENT || key.startsWith(`${RESERVED_SEGMENT}/`);
}
