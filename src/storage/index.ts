import { LocalStorage } from "./local.ts";
import { S3Storage, type S3StorageOptions } from "./s3.ts";
import type { Storage } from "./types.ts";
import { parseStorageUrl } from "./url.ts";

export { type ByteSource, byteSource } from "./byte-source.ts";
export {
  isStorageError,
  STORAGE_ERROR_STATUS,
  StorageError,
  type StorageErrorCode,
} from "./errors.ts";
export { RESERVED_SEGMENT, validateKey, validatePrefix } from "./keys.ts";
export { LocalStorage } from "./local.ts";
export { S3Storage, type S3StorageOptions } from "./s3.ts";
export { createS3Client, type S3ConnectionOptions } from "./s3-client.ts";
export type {
  ByteRange,
  ObjectInfo,
  PutOptions,
  PutResult,
  Storage,
  StorageLogger,
} from "./types.ts";
export { parseStorageUrl, type StorageLocation } from "./url.ts";

/** Options for `createStorage`; local storage ignores the S3 settings. */
export type CreateStorageOptions = S3StorageOptions;

/**
 * Creates the storage for a URL: `file:///absolute/dir` gives local disk storage rooted at that
 * directory, `s3://bucket/prefix` gives S3 storage configured from `options` and the AWS
 * environment variables. Throws `INVALID_URL` for anything else.
 */
export function createStorage(url: string, options: CreateStorageOptions = {}): Storage {
  const location = parseStorageUrl(url);
  return location.kind === "local"
    ? new LocalStorage(location.root, { logger: options.logger })
    : new S3Storage(location.bucket, location.prefix, options);
}
