import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  type S3Client,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import { describeError } from "./errors.ts";
import type { StorageLogger } from "./types.ts";

/** S3's limit for a single CopyObject request (5 GiB); larger objects must be copied in parts. */
export const MAX_SINGLE_COPY_BYTES = 5 * 1024 ** 3;

/** S3's limit on the number of parts in one multipart upload. */
export const MAX_PARTS = 10_000;

const DEFAULT_COPY_PART_BYTES = 512 * 1024 ** 2;

export interface CopyRequest {
  bucket: string;
  sourceKey: string;
  targetKey: string;
  /** Size of the source object in bytes. */
  size: number;
  /** User metadata that replaces the source's metadata on the copy. */
  metadata: Record<string, string>;
  contentType?: string;
}

/** Builds the `x-amz-copy-source` value: bucket and URL-encoded key, with `/` left as is. */
function copySource(bucket: string, key: string): string {
  return `${bucket}/${encodeURIComponent(key).replace(/%2F/g, "/")}`;
}

/**
 * Copies an object server-side with new metadata and returns the copy's modification time when
 * the endpoint reports it. Objects up to 5 GiB take one CopyObject request; larger ones a
 * multipart upload of UploadPartCopy requests, which is aborted if any part fails.
 *
 * NOTE: the multipart path is not covered by tests, because s3rver (the test server) rejects
 * UploadPartCopy as NotImplemented.
 */
export async function copyWithMetadata(
  client: S3Client,
  request: CopyRequest,
  logger?: StorageLogger,
): Promise<Date | undefined> {
  const { bucket, sourceKey, targetKey, size, metadata, contentType } = request;
  const source = copySource(bucket, sourceKey);
  if (size <= MAX_SINGLE_COPY_BYTES) {
    const result = await client.send(
      new CopyObjectCommand({
        Bucket: bucket,
        Key: targetKey,
        CopySource: source,
        MetadataDirective: "REPLACE",
        Metadata: metadata,
        ContentType: contentType,
      }),
    );
    return result.CopyObjectResult?.LastModified;
  }

  const partBytes = Math.max(DEFAULT_COPY_PART_BYTES, Math.ceil(size / MAX_PARTS));
  const { UploadId } = await client.send(
    new CreateMultipartUploadCommand({
      Bucket: bucket,
      Key: targetKey,
      Metadata: metadata,
      ContentType: contentType,
    }),
  );
  try {
    const parts: { PartNumber: number; ETag: string | undefined }[] = [];
    for (let start = 0, partNumber = 1; start < size; start += partBytes, partNumber++) {
      const end = Math.min(start + partBytes, size) - 1;
      const result = await client.send(
        new UploadPartCopyCommand({
          Bucket: bucket,
          Key: targetKey,
          UploadId,
          PartNumber: partNumber,
          CopySource: source,
          CopySourceRange: `bytes=${start}-${end}`,
        }),
      );
      parts.push({ PartNumber: partNumber, ETag: result.CopyPartResult?.ETag });
    }
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: targetKey,
        UploadId,
        MultipartUpload: { Parts: parts },
      }),
    );
    return undefined;
  } catch (error) {
    await client
      .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: targetKey, UploadId }))
      .catch((abortError) => {
        logger?.warn(
          { bucket, key: targetKey, uploadId: UploadId, error: describeError(abortError) },
          "Failed to abort a multipart copy; its parts stay billed until a bucket lifecycle rule removes them",
        );
      });
    throw error;
  }
}
