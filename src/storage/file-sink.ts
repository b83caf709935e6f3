/**
 * A writable stream that writes a new file in large batches and fsyncs it before it finishes.
 * Compared with `createWriteStream`, which writes through a 16 KiB buffer and leaves every byte
 * to one fsync at the end, it
 *
 * - gathers chunks into batches of `BATCH_BYTES` and writes each with one `writev`, two batches
 *   at a time on the libuv thread pool, without copying the chunks;
 * - starts an `fdatasync` each time another `SYNC_EVERY_BYTES` are written, so the disk works
 *   while the body still arrives instead of after it. Left alone, the kernel keeps the whole
 *   body dirty in the page cache and the final fsync writes all of it while the client waits.
 *
 * docs/benchmarks.md ("Model scale") has the upload rates before and after.
 */

import { type FileHandle, open } from "node:fs/promises";
import { Writable } from "node:stream";

/** Bytes gathered into one `writev`. */
export const BATCH_BYTES = 8 * 1024 * 1024;

/** Batches written at once. The sink stops accepting chunks while this many are in flight. */
const MAX_BATCHES_IN_FLIGHT = 2;

/** Bytes written between two background `fdatasync` calls. */
export const SYNC_EVERY_BYTES = 64 * 1024 * 1024;

type Callback = (error?: Error | null) => void;

/**
 * Writes a new file at `path`, created or truncated. After `finish` the bytes are on disk and
 * `size` counts them. On failure the stream errors with the file system's error (`code` kept)
 * and the partly written file stays for the caller to remove.
 */
export class FileSink extends Writable {
  /** Bytes written; final once the stream has finished. */
  size = 0;
  readonly #path: string;
  #handle: FileHandle | undefined;
  /** Chunks not yet handed to `writev`, and their total length. */
  #gathered: Buffer[] = [];
  #gatheredBytes = 0;
  #inFlight = 0;
  #syncedUpTo = 0;
  #syncing: Promise<void> | undefined;
  #failure: Error | undefined;
  /** A write callback held back until a batch completes. */
  #writeWaiting: Callback | undefined;
  /** The final callback, waiting for the last batches. */
  #finalWaiting: Callback | undefined;

  constructor(path: string) {
    super({ highWaterMark: BATCH_BYTES });
    this.#path = path;
  }

  override _construct(callback: Callback): void {
    open(this.#path, "w").then(
      (handle) => {
        this.#handle = handle;
        callback();
      },
      (error: Error) => callback(error),
    );
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    if (this.#failure) {
      callback(this.#failure);
      return;
    }
    // The chunk is kept, not copied: a stream's consumer owns the chunks it is given.
    this.#gathered.push(chunk);
    this.#gatheredBytes += chunk.length;
    if (this.#gatheredBytes >= BATCH_BYTES) this.#writeBatch();
    if (this.#inFlight >= MAX_BATCHES_IN_FLIGHT) this.#writeWaiting = callback;
    else callback();
  }

  override _final(callback: Callback): void {
    if (this.#failure) {
      callback(this.#failure);
      return;
    }
    if (this.#gatheredBytes > 0) this.#writeBatch();
    this.#finalWaiting = callback;
    this.#finishWhenWritten();
  }

  override _destroy(error: Error | null, callback: Callback): void {
    const handle = this.#handle;
    this.#handle = undefined;
    // FileHandle.close waits for operations still in flight before it closes the descriptor.
    (handle ? handle.close() : Promise.resolve()).then(
      () => callback(error),
      (closeError: Error) => callback(error ?? closeError),
    );
  }

  #writeBatch(): void {
    const handle = this.#handle as FileHandle;
    const chunks = this.#gathered;
    const length = this.#gatheredBytes;
    const position = this.size;
    this.#gathered = [];
    this.#gatheredBytes = 0;
    this.size += length;
    this.#inFlight += 1;
    writeAll(handle, chunks, length, position).then(
      () => {
        this.#inFlight -= 1;
        this.#syncInBackground(handle, position + length);
        this.#continue();
      },
      (error: Error) => this.#fail(error),
    );
  }

  /** Starts an `fdatasync` once another `SYNC_EVERY_BYTES` are written, one at a time. */
  #syncInBackground(handle: FileHandle, writtenUpTo: number): void {
    if (this.#syncing || writtenUpTo - this.#syncedUpTo < SYNC_EVERY_BYTES) return;
    this.#syncedUpTo = writtenUpTo;
    this.#syncing = handle.datasync().then(
      () => {
        this.#syncing = undefined;
      },
      (error: Error) => {
        this.#syncing = undefined;
        this.#fail(error);
      },
    );
  }

  /** After a batch completes: releases a held write, or finishes once nothing is in flight. */
  #continue(): void {
    if (this.#failure) return;
    if (this.#writeWaiting && this.#inFlight < MAX_BATCHES_IN_FLIGHT) {
      const callback = this.#writeWaiting;
      this.#writeWaiting = undefined;
      callback();
    }
    if (this.#finalWaiting) this.#finishWhenWritten();
  }

  /** Once every batch is written: waits for a background sync, then fsyncs and closes. */
  #finishWhenWritten(): void {
    if (this.#inFlight > 0 || this.#handle === undefined) return;
    const handle = this.#handle;
    this.#handle = undefined;
    Promise.resolve(this.#syncing)
      .then(() => handle.sync())
      .then(() => handle.close())
      .then(
        () => {
          const callback = this.#finalWaiting;
          this.#finalWaiting = undefined;
          callback?.();
        },
        (error: Error) => {
          handle.close().catch(() => {});
          this.#fail(error);
        },
      );
  }

  #fail(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    const waiting = this.#writeWaiting ?? this.#finalWaiting;
    this.#writeWaiting = undefined;
    this.#finalWaiting = undefined;
    if (waiting) waiting(error);
    else this.destroy(error);
  }
}

/** Writes `chunks` (`length` bytes in all) at `position`, repeating after a short write. */
async function writeAll(
  handle: FileHandle,
  chunks: Buffer[],
  length: number,
  position: number,
): Promise<void> {
  let written = (await handle.writev(chunks, position)).bytesWritten;
  if (written === length) return;
  // After a short write, the rest goes out from one joined buffer.
  const whole = Buffer.concat(chunks, length);
  while (written < length) {
    const { bytesWritten } = await handle.write(
      whole,
      written,
      length - written,
      position + written,
    );
    written += bytesWritten;
  }
}
