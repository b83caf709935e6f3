import { isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";
import { describeError, StorageError } from "./errors.ts";
import { validateKey } from "./keys.ts";

export type StorageLocation =
  | { kind: "local"; root: string }
  | { kind: "s3"; bucket: string; prefix: string };

const STORAGE_URL_FORM = 'expected "file:///absolute/directory" or "s3://bucket/optional/prefix"';

// S3 bucket naming rules for buckets created since 2018: 3 to 63 lowercase letters, digits, dots
// and hyphens, starting and ending with a letter or digit.
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

function invalidUrl(url: string, reason: string, cause?: unknown): StorageError {
  return new StorageError(
    "INVALID_URL",
    `Invalid storage URL ${JSON.stringify(url)}: ${reason}; ${STORAGE_URL_FORM}.`,
    {
      cause,
    },
  );
}

function parseFileUrl(url: string): StorageLocation {
  let root: string;
  try {
    root = fileURLToPath(url);
  } catch (error) {
    throw invalidUrl(url, describeError(error), error);
  }
  if (!isAbsolute(root)) {
    throw invalidUrl(url, "the directory must be an absolute path");
  }
  return { kind: "local", root };
}

function parseS3Url(url: string): StorageLocation {
  const match = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  const bucket = match?.[1] ?? "";
  if (!BUCKET_NAME.test(bucket)) {
    throw invalidUrl(
      url,
      `bucket name ${JSON.stringify(bucket)} must be 3 to 63 lowercase letters, digits, dots or hyphens`,
    );
  }
  const path = (match?.[2] ?? "").replace(/\/+$/, "");
  if (path === "") {
    return { kind: "s3", bucket, prefix: "" };
  }
  try {
    validateKey(path);
  } catch (error) {
    throw invalidUrl(url, `the prefix is not a valid key path (${describeError(error)})`, error);
  }
  return { kind: "s3", bucket, prefix: `${path}/` };
}

/** Parses a storage URL: `file:///absolute/dir` for local disk, `s3://bucket/prefix` for S3. */
export function parseStorageUrl(url: string): StorageLocation {
  if (url.startsWith("file:")) {
    return parseFileUrl(url);
  }
  if (url.startsWith("s3:")) {
    return parseS3Url(url);
  }
  throw invalidUrl(url, "unsupported scheme");
}
