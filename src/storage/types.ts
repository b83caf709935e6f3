import type { Readable } from "node:stream";

/** Metadata of one stored object. */
export interface ObjectInfo {
  key: string;
  /** Object size in bytes. */
  size: number;
  /** Hex SHA-256 of the content, present only for objects written by `publish`. */
  sha256?: string;
  lastModified?: Date;
}

/** Inclusive byte range, as in an HTTP `Range: bytes=start-end` header. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface PutOptions {
  /** Abort with a `TOO_LARGE` error once the body exceeds this many bytes; nothing is stored then. */
  maxBytes?: number;
  /** Content type recorded by S3; local storage ignores it. */
  contentType?: string;
}

/** Size and hex SHA-256 of a body, computed while it streamed through. */
export interface PutResult {
  size: number;
  sha256: string;
}

/**
 * Object store for uploads and artifacts. Keys are `/`-separated relative paths such as
 * `jobs/42/model.safetensors`; see `validateKey` for the rules. Bodies always stream, so an
 * object can be larger than memory.
 *
 * Every method rejects with a `StorageError` whose `code` names the failure kind, with one
 * exception: a stream returned by `get` can still emit a backend error while it is read.
 */
export interface Storage {
  readonly kind: "local" | "s3";

  /**
   * Streams `body` to `key`, replacing any object there, and returns the size and SHA-256
   * computed on the way. The object becomes visible only once the whole body is stored. On
   * failure (including `TOO_LARGE`) nothing is left under the key. The body stream is not
   * destroyed on failure: the caller owns it and decides whether to drain or destroy it.
   */
  put(key: string, body: Readable, options?: PutOptions): Promise<PutResult>;

  /**
   * Writes `body` under a temporary name and then commits it to `key` in one step, storing its
   * SHA-256 with the object so that `head` returns it. Readers never see a partial object, and
   * the temporary object is removed on success and on failure.
   */
  publish(
    key: string,
    body: Readable,
    options?: Omit<PutOptions, "maxBytes">,
  ): Promise<ObjectInfo & { sha256: string }>;

  /** Opens a read stream over the whole object or an inclusive byte range of it. An `end` past the last byte is clamped to it. */
  get(key: string, range?: ByteRange): Promise<Readable>;

  /** Reads exactly `length` bytes starting at `offset`; a range past the end of the object is an `INVALID_RANGE` error. */
  read(key: string, offset: number, length: number): Promise<Buffer>;

  /** Returns the object's metadata, or `undefined` when no object is stored under `key`. */
  head(key: string): Promise<ObjectInfo | undefined>;

  /**
   * Lists every object whose key starts with `prefix` (a plain string prefix, as in S3, so
   * `jobs/1` also matches `jobs/10/x`), sorted by key. `sha256` is not filled in.
   */
  list(prefix: string): Promise<ObjectInfo[]>;

  /** Deletes the object under `key`; deleting a missing key succeeds. */
  delete(key: string): Promise<void>;

  /** Deletes every object whose key starts with `prefix` and returns how many were deleted. An empty prefix is rejected. */
  deletePrefix(prefix: string): Promise<number>;

  /** Checks that the backend can be reached and written to; rejects with `UNAVAILABLE` otherwise. */
  ping(): Promise<void>;
}

/** Logger used for failures the storage layer handles itself, such as a temporary object it could not remove. pino loggers fit. */
export interface StorageLogger {
  warn(details: Record<string, unknown>, message: string): void;
}
