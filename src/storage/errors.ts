/** Failure kinds of a storage operation, each with the HTTP status a route should respond with. */
export const STORAGE_ERROR_STATUS = {
  /** The key (or one of its characters or segments) is not allowed. */
  INVALID_KEY: 400,
  /** The requested byte range lies outside the object or is malformed. */
  INVALID_RANGE: 416,
  /** The storage URL passed to `createStorage` cannot be used. */
  INVALID_URL: 500,
  /** No object is stored under the key. */
  NOT_FOUND: 404,
  /** The key collides with a stored object or prefix that local disk storage cannot hold together. */
  CONFLICT: 409,
  /** The body exceeded the `maxBytes` limit of the upload. */
  TOO_LARGE: 413,
  /** The body stream failed or was destroyed before it ended, for example a client that disconnected. */
  BODY_ABORTED: 400,
  /** The backend (disk or S3 endpoint) failed or could not be reached. */
  UNAVAILABLE: 503,
} as const;

export type StorageErrorCode = keyof typeof STORAGE_ERROR_STATUS;

/** Typed error raised by every `Storage` operation; `code` names the failure kind and `status` maps it to HTTP. */
export class StorageError extends Error {
  override readonly name = "StorageError";
  readonly code: StorageErrorCode;
  readonly status: number;
  /** Object key the operation was working on, when there is one. */
  readonly key: string | undefined;

  constructor(
    code: StorageErrorCode,
    message: string,
    options: { key?: string; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.code = code;
    this.status = STORAGE_ERROR_STATUS[code];
    this.key = options.key;
  }
}

export function isStorageError(error: unknown, code?: StorageErrorCode): error is StorageError {
  return error instanceof StorageError && (code === undefined || error.code === code);
}

/** Returns `error.message` for an Error, or the value as text otherwise, for use inside messages. */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
