import { createHash } from "node:crypto";
import { finished, type Readable, Transform, type TransformCallback } from "node:stream";
import { describeError, StorageError } from "./errors.ts";

/**
 * Pass-through stream that counts bytes and computes their SHA-256, and fails with `TOO_LARGE`
 * as soon as the count passes `maxBytes`.
 */
export class BodyMeter extends Transform {
  // Not named `size`: lib-storage's Upload reads `Body.size` as the total body length.
  byteCount = 0;
  /** The error that stopped the body (`TOO_LARGE` or `BODY_ABORTED`), kept so callers can report it instead of a wrapped copy. */
  failure: StorageError | undefined;
  readonly #hash = createHash("sha256");
  readonly #key: string;
  readonly #maxBytes: number | undefined;

  constructor(key: string, maxBytes?: number) {
    super();
    this.#key = key;
    this.#maxBytes = maxBytes;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.byteCount += chunk.length;
    if (this.#maxBytes !== undefined && this.byteCount > this.#maxBytes) {
      const error = new StorageError(
        "TOO_LARGE",
        `Body for ${JSON.stringify(this.#key)} exceeds the limit of ${this.#maxBytes} bytes; nothing was stored.`,
        { key: this.#key },
      );
      this.failure = error;
      callback(error);
      return;
    }
    this.#hash.update(chunk);
    callback(null, chunk);
  }

  /** Fails the meter with `BODY_ABORTED` because the source body failed. */
  abortBody(cause: unknown): void {
    if (this.failure || this.destroyed) {
      return;
    }
    this.failure = new StorageError(
      "BODY_ABORTED",
      `Body for ${JSON.stringify(this.#key)} failed after ${this.byteCount} bytes: ${describeError(cause)}; nothing was stored.`,
      { key: this.#key, cause },
    );
    this.destroy(this.failure);
  }

  /** Hex SHA-256 of everything that passed; call only after the meter has ended. */
  digest(): string {
    return this.#hash.copy().digest("hex");
  }
}

function checkMaxBytes(maxBytes: number | undefined): void {
  if (maxBytes !== undefined && !(Number.isSafeInteger(maxBytes) && maxBytes >= 0)) {
    throw new RangeError(`Invalid maxBytes ${maxBytes}: expected a non-negative safe integer.`);
  }
}

/**
 * Pipes `body` into a new `BodyMeter`. The body's lifetime stays with the caller: when the meter
 * fails, `pipe` detaches from the body but does not destroy it. A body that errors or closes
 * before its end fails the meter with `BODY_ABORTED`.
 */
export function meterBody(key: string, body: Readable, maxBytes?: number): BodyMeter {
  checkMaxBytes(maxBytes);
  const meter = new BodyMeter(key, maxBytes);
  // The consumer (a file pipeline or an S3 upload) may attach later than the first failure.
  // Failures reach the caller through `meter.failure` and the consumer's rejection, so this
  // listener only keeps an early 'error' event from crashing the process.
  meter.on("error", () => {});
  finished(body, { writable: false }, (error) => {
    if (error) {
      meter.abortBody(error);
    }
  });
  body.pipe(meter);
  return meter;
}
