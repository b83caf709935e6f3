import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { describeError, StorageError } from "./errors.ts";
import {
  compareKeys,
  isReservedKey,
  MAX_KEY_BYTES,
  RESERVED_SEGMENT,
  validateKey,
  validatePrefix,
} from "./keys.ts";
import { meterBody } from "./meter.ts";
import { checkRange, checkReadWindow, rangeNotSatisfiable } from "./ranges.ts";
import { createS3Client, type S3ConnectionOptions } from "./s3-client.ts";
import { copyWithMetadata, MAX_PARTS } from "./s3-copy.ts";
import { toS3StorageError } from "./s3-errors.ts";
import type {
  ByteRange,
  ObjectInfo,
  PutOptions,
  PutResult,
  Storage,
  StorageLogger,
} from "./types.ts";

/** S3's minimum size of every part but the last. */
const MIN_PART_BYTES = 5 * 1024 ** 2;

/** Default part size: 16 MiB parts allow uploads of unknown length up to 156 GiB within S3's 10,000-part limit. */
const DEFAULT_PART_BYTES = 16 * 1024 ** 2;

/** S3's maximum for ListObjectsV2 and DeleteObjects. */
const MAX_KEYS_PER_REQUEST = 1000;

const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface S3StorageOptions extends S3ConnectionOptions {
  /** Client to use instead of one built from the connection options. */
  client?: S3Client;
  /**
   * Multipart part size in bytes, at least 5 MiB; default 16 MiB. Uploads of unknown length can
   * reach 10,000 parts of this size, and `put` raises it as needed to fit `maxBytes`.
   */
  partSizeBytes?: number;
  /** Parts uploaded in parallel; each upload buffers up to `uploadQueueSize * partSizeBytes` bytes. Default 4. */
  uploadQueueSize?: number;
  /** Keys requested per ListObjectsV2 page, at most 1000 (the default). */
  listPageSize?: number;
  logger?: StorageLogger;
}

/**
 * Storage in an S3 bucket under a key prefix. Uploads stream through multipart uploads, which
 * S3 makes visible only on completion. `publish` uploads to a temporary key under
 * `<prefix>.pifa/tmp/`, then copies it to the final key with the SHA-256 in the object's user
 * metadata (`x-amz-meta-sha256`) and deletes the temporary object.
 */
export class S3Storage implements Storage {
  readonly kind = "s3";
  readonly bucket: string;
  /** Key prefix inside the bucket: empty or ending in `/`. */
  readonly prefix: string;
  readonly client: S3Client;
  readonly #partBytes: number;
  readonly #queueSize: number;
  readonly #listPageSize: number;
  readonly #logger: StorageLogger | undefined;

  constructor(bucket: string, prefix: string, options: S3StorageOptions = {}) {
    this.bucket = bucket;
    this.prefix = prefix;
    this.client = options.client ?? createS3Client(options);
    this.#partBytes = options.partSizeBytes ?? DEFAULT_PART_BYTES;
    this.#queueSize = options.uploadQueueSize ?? 4;
    this.#listPageSize = options.listPageSize ?? MAX_KEYS_PER_REQUEST;
    this.#logger = options.logger;
    if (!Number.isSafeInteger(this.#partBytes) || this.#partBytes < MIN_PART_BYTES) {
      throw new RangeError(
        `Invalid partSizeBytes ${this.#partBytes}: S3 needs parts of at least ${MIN_PART_BYTES} bytes.`,
      );
    }
    if (!Number.isSafeInteger(this.#queueSize) || this.#queueSize < 1) {
      throw new RangeError(
        `Invalid uploadQueueSize ${this.#queueSize}: expected a positive integer.`,
      );
    }
    if (
      !Number.isSafeInteger(this.#listPageSize) ||
      this.#listPageSize < 1 ||
      this.#listPageSize > MAX_KEYS_PER_REQUEST
    ) {
      throw new RangeError(
        `Invalid listPageSize ${this.#listPageSize}: expected an integer from 1 to ${MAX_KEYS_PER_REQUEST}.`,
      );
    }
  }

  /** `s3://bucket/prefix`, for messages. */
  get location(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<PutResult> {
    const s3Key = this.#s3Key(key);
    const meter = meterBody(key, body, options.maxBytes);
    const partBytes =
      options.maxBytes === undefined
        ? this.#partBytes
        : Math.max(this.#partBytes, Math.ceil(options.maxBytes / MAX_PARTS));
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: s3Key, Body: meter, ContentType: options.contentType },
      partSize: partBytes,
      queueSize: this.#queueSize,
    });
    try {
      await upload.done();
    } catch (error) {
      // Destroying the meter detaches it from the body, which stays with the caller.
      meter.destroy();
      // A failed body also fails the upload, and the SDK may then report its own follow-up
      // error (for example a failed AbortMultipartUpload) instead of the cause.
      throw meter.failure ?? toS3StorageError("store", key, this.location, error);
    }
    return { size: meter.byteCount, sha256: meter.digest() };
  }

  async publish(
    key: string,
    body: Readable,
    options: PutOptions = {},
  ): Promise<ObjectInfo & { sha256: string }> {
    const s3Key = this.#s3Key(key);
    const temporaryKey = `${this.prefix}${RESERVED_SEGMENT}/tmp/${randomUUID()}`;
    const meter = meterBody(key, body);
    try {
      await new Upload({
        client: this.client,
        params: {
          Bucket: this.bucket,
          Key: temporaryKey,
          Body: meter,
          ContentType: options.contentType,
        },
        partSize: this.#partBytes,
        queueSize: this.#queueSize,
      }).done();
      const sha256 = meter.digest();
      const lastModified = await copyWithMetadata(
        this.client,
        {
          bucket: this.bucket,
          sourceKey: temporaryKey,
          targetKey: s3Key,
          size: meter.byteCount,
          metadata: { sha256 },
          contentType: options.contentType,
        },
        this.#logger,
      );
      return { key, size: meter.byteCount, sha256, ...(lastModified ? { lastModified } : {}) };
    } catch (error) {
      meter.destroy();
      throw meter.failure ?? toS3StorageError("publish", key, this.location, error);
    } finally {
      await this.#deleteTemporary(temporaryKey);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const s3Key = this.#s3Key(key);
    if (range) {
      checkRange(key, range);
    }
    const output = await this.#getObject(key, s3Key, range);
    return this.#bodyStream(key, output);
  }

  async read(key: string, offset: number, length: number): Promise<Buffer> {
    const s3Key = this.#s3Key(key);
    checkReadWindow(key, offset, length);
    if (length === 0) {
      // S3 has no empty byte range; check existence and bounds with HEAD instead.
      const info = await this.head(key);
      if (!info) {
        throw new StorageError(
          "NOT_FOUND",
          `No object is stored at ${JSON.stringify(key)} in ${this.location}.`,
          { key },
        );
      }
      if (offset > info.size) {
        throw rangeNotSatisfiable(key, offset, offset, info.size);
      }
      return Buffer.alloc(0);
    }
    const end = offset + length - 1;
    const output = await this.#getObject(key, s3Key, { start: offset, end });
    let buffer: Buffer;
    try {
      buffer = Buffer.concat(await this.#bodyStream(key, output).toArray());
    } catch (error) {
      throw toS3StorageError("read", key, this.location, error);
    }
    if (buffer.length !== length) {
      // S3 clamps a range that runs past the end, so a short body means the object is smaller.
      throw rangeNotSatisfiable(
        key,
        offset,
        end,
        objectSizeFromContentRange(output.ContentRange) ?? offset + buffer.length,
      );
    }
    return buffer;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const s3Key = this.#s3Key(key);
    try {
      const output = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: s3Key }),
      );
      const sha256 = output.Metadata?.sha256;
      return {
        key,
        size: output.ContentLength ?? 0,
        ...(output.LastModified ? { lastModified: output.LastModified } : {}),
        ...(sha256 && SHA256_HEX.test(sha256) ? { sha256 } : {}),
      };
    } catch (error) {
      const mapped = toS3StorageError("stat", key, this.location, error);
      if (mapped.code === "NOT_FOUND") {
        return undefined;
      }
      throw mapped;
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    validatePrefix(prefix);
    const objects: ObjectInfo[] = [];
    let continuationToken: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: `${this.prefix}${prefix}`,
            MaxKeys: this.#listPageSize,
            ContinuationToken: continuationToken,
          }),
        );
        for (const entry of page.Contents ?? []) {
          const key = entry.Key?.slice(this.prefix.length);
          // Keys ending in "/" are folder placeholders made by consoles and tools, not objects.
          if (
            !key ||
            !entry.Key?.startsWith(this.prefix) ||
            key.endsWith("/") ||
            isReservedKey(key)
          ) {
            continue;
          }
          objects.push({
            key,
            size: entry.Size ?? 0,
            ...(entry.LastModified ? { lastModified: entry.LastModified } : {}),
          });
        }
        continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (continuationToken);
    } catch (error) {
      throw toS3StorageError("list", prefix, this.location, error);
    }
    // S3 sorts by UTF-8 bytes, which differs from local storage's order for characters outside
    // the BMP. Sorting again gives both backends the same order.
    return objects.sort((a, b) => compareKeys(a.key, b.key));
  }

  async delete(key: string): Promise<void> {
    const s3Key = this.#s3Key(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: s3Key }));
    } catch (error) {
      throw toS3StorageError("delete", key, this.location, error);
    }
  }

  async deletePrefix(prefix: string): Promise<number> {
    validatePrefix(prefix);
    if (prefix === "") {
      throw new StorageError(
        "INVALID_KEY",
        "deletePrefix needs a non-empty prefix; an empty prefix would delete every object in the store.",
      );
    }
    const objects = await this.list(prefix);
    for (let start = 0; start < objects.length; start += MAX_KEYS_PER_REQUEST) {
      const batch = objects.slice(start, start + MAX_KEYS_PER_REQUEST);
      let errors: { Key?: string; Code?: string; Message?: string }[];
      try {
        const output = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: {
              Objects: batch.map((object) => ({ Key: `${this.prefix}${object.key}` })),
              Quiet: true,
            },
          }),
        );
        errors = output.Errors ?? [];
      } catch (error) {
        throw toS3StorageError("delete objects under", prefix, this.location, error);
      }
      const first = errors[0];
      if (first) {
        throw new StorageError(
          "UNAVAILABLE",
          `Failed to delete ${errors.length} of ${batch.length} objects under ${JSON.stringify(prefix)} in ${this.location}; first: ${first.Key}: ${first.Code} ${first.Message}.`,
          { key: prefix },
        );
      }
    }
    return objects.length;
  }

  async ping(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      const { name } = error instanceof Error ? error : { name: "Error" };
      throw new StorageError(
        "UNAVAILABLE",
        `S3 bucket ${this.bucket} is not reachable (${name}: ${describeError(error)}). Check that the bucket exists, that the endpoint (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL) is reachable and that the credentials may access it.`,
        { cause: error },
      );
    }
  }

  /** Validates `key` and returns the full S3 key under the prefix. */
  #s3Key(key: string): string {
    validateKey(key);
    const s3Key = `${this.prefix}${key}`;
    if (Buffer.byteLength(s3Key) > MAX_KEY_BYTES) {
      throw new StorageError(
        "INVALID_KEY",
        `Invalid storage key ${JSON.stringify(key)}: with the prefix ${JSON.stringify(this.prefix)} it is longer than S3's ${MAX_KEY_BYTES} bytes.`,
        { key },
      );
    }
    return s3Key;
  }

  async #getObject(
    key: string,
    s3Key: string,
    range: ByteRange | undefined,
  ): Promise<GetObjectCommandOutput> {
    let output: GetObjectCommandOutput;
    try {
      output = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: s3Key,
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
    } catch (error) {
      const mapped = toS3StorageError("read", key, this.location, error);
      throw mapped.code === "INVALID_RANGE" && range
        ? rangeNotSatisfiable(key, range.start, range.end, await this.#sizeOf(key))
        : mapped;
    }
    if (range && !output.ContentRange) {
      // An endpoint that ignores Range returns 200 with the whole object; passing that on would
      // hand the caller the wrong bytes.
      this.#bodyStream(key, output).destroy();
      throw new StorageError(
        "UNAVAILABLE",
        `The S3 endpoint ignored the byte range ${range.start}-${range.end} for ${JSON.stringify(key)} in ${this.location}; range reads need an endpoint that supports the Range header.`,
        { key },
      );
    }
    return output;
  }

  #bodyStream(key: string, output: GetObjectCommandOutput): Readable {
    if (!(output.Body instanceof Readable)) {
      throw new StorageError(
        "UNAVAILABLE",
        `The S3 response for ${JSON.stringify(key)} has no readable body.`,
        { key },
      );
    }
    return output.Body;
  }

  async #sizeOf(key: string): Promise<number> {
    return (await this.head(key))?.size ?? 0;
  }

  async #deleteTemporary(temporaryKey: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: temporaryKey }));
    } catch (error) {
      this.#logger?.warn(
        { bucket: this.bucket, key: temporaryKey, error: describeError(error) },
        "Failed to delete a temporary publish object; remove it by hand or with a bucket lifecycle rule",
      );
    }
  }
}

/** Reads the total size from a `Content-Range: bytes start-end/size` header. */
function objectSizeFromContentRange(contentRange: string | undefined): number | undefined {
  const match = /\/(\d+)$/.exec(contentRange ?? "");
  return match ? Number(match[1]) : undefined;
}
