import { describeError, StorageError } from "./errors.ts";

/** Fields the AWS SDK v3 sets on a service or network error. */
interface AwsError {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function awsFields(error: unknown): { name: string; status: number | undefined } {
  const fields = (typeof error === "object" && error !== null ? error : {}) as AwsError;
  return { name: fields.Code ?? fields.name ?? "Error", status: fields.$metadata?.httpStatusCode };
}

const ACCESS_ERRORS = new Set([
  "AccessDenied",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
]);

/**
 * Maps an AWS SDK error to a `StorageError`. A missing object is `NOT_FOUND` and a range past the
 * end is `INVALID_RANGE`. A missing bucket, rejected credentials, network and server errors are
 * `UNAVAILABLE`, with the likely fix in the message.
 */
export function toS3StorageError(
  operation: string,
  key: string,
  location: string,
  error: unknown,
): StorageError {
  if (error instanceof StorageError) {
    return error;
  }
  const { name, status } = awsFields(error);
  const where = `${JSON.stringify(key)} in ${location}`;
  if (name === "NoSuchBucket") {
    return new StorageError(
      "UNAVAILABLE",
      `Cannot ${operation} ${where}: the bucket does not exist. Create it or fix PIFA_STORAGE_URL.`,
      { key, cause: error },
    );
  }
  if (name === "NoSuchKey" || name === "NotFound" || status === 404) {
    return new StorageError("NOT_FOUND", `No object is stored at ${where}.`, { key, cause: error });
  }
  if (name === "InvalidRange" || status === 416) {
    return new StorageError(
      "INVALID_RANGE",
      `Cannot ${operation} ${where}: the byte range is outside the object.`,
      {
        key,
        cause: error,
      },
    );
  }
  if (ACCESS_ERRORS.has(name) || status === 403) {
    return new StorageError(
      "UNAVAILABLE",
      `Cannot ${operation} ${where}: access denied (${name}). Check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket policy.`,
      { key, cause: error },
    );
  }
  return new StorageError(
    "UNAVAILABLE",
    `Cannot ${operation} ${where}: ${name}: ${describeError(error)}. Check that the S3 endpoint (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL) is reachable.`,
    { key, cause: error },
  );
}
