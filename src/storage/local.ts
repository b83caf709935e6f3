import { randomUUID } from "node:crypto";
import { constants, type Dirent } from "node:fs";
import { access, type FileHandle, mkdir, open, readdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describeError, StorageError } from "./errors.ts";
import { FileSink } from "./file-sink.ts";
import {
  compareKeys,
  isReservedKey,
  RESERVED_SEGMENT,
  validateKey,
  validatePrefix,
} from "./keys.ts";
import {
  errnoOf,
  fileIdentity,
  pruneEmptyDirectories,
  readSidecarSha256,
  removeFile,
  renameIntoPlace,
  toStorageError,
  writeSidecar,
} from "./local-files.ts";
import { type BodyMeter, meterBody } from "./meter.ts";
import { checkRange, checkReadWindow, rangeNotSatisfiable } from "./ranges.ts";
import type {
  ByteRange,
  ObjectInfo,
  PutOptions,
  PutResult,
  Storage,
  StorageLogger,
} from "./types.ts";

/**
 * Storage on a local directory: key `a/b/c` is the file `<root>/a/b/c`. Writes go to a
 * temporary file under `<root>/.pifa/tmp` (same filesystem, so the final rename is atomic), and
 * SHA-256 checksums of published objects are kept in JSON sidecars under `<root>/.pifa/meta`.
 *
 * NOTE: temporary files of a process that crashed mid-write stay in `<root>/.pifa/tmp` until
 * removed by hand; nothing sweeps them yet.
 */
export class LocalStorage implements Storage {
  readonly kind = "local";
  readonly root: string;
  readonly #temporaryDirectory: string;
  readonly #sidecarRoot: string;
  readonly #logger: StorageLogger | undefined;

  /** `root` must be an absolute path; it is created on the first write or `ping`. */
  constructor(root: string, options: { logger?: StorageLogger } = {}) {
    this.root = root;
    this.#logger = options.logger;
    this.#temporaryDirectory = join(root, RESERVED_SEGMENT, "tmp");
    this.#sidecarRoot = join(root, RESERVED_SEGMENT, "meta");
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<PutResult> {
    validateKey(key);
    const { meter, temporary } = await this.#writeTemporary(key, body, options.maxBytes);
    try {
      // The new content has no recorded checksum; drop the old one before the file appears.
      await removeFile(this.#sidecarPath(key));
      await renameIntoPlace(temporary, this.#objectPath(key));
    } catch (error) {
      await this.#removeAfterFailure(temporary);
      throw toStorageError("store", key, this.root, error);
    }
    return { size: meter.byteCount, sha256: meter.digest() };
  }

  async publish(key: string, body: Readable): Promise<ObjectInfo & { sha256: string }> {
    validateKey(key);
    const { meter, temporary } = await this.#writeTemporary(key, body, undefined);
    const sha256 = meter.digest();
    const sidecar = this.#sidecarPath(key);
    let sidecarWritten = false;
    try {
      const stats = await stat(temporary, { bigint: true });
      // The sidecar goes first: until the rename below it names a file identity that does not
      // exist yet, so `head` ignores it instead of pairing it with the old content.
      await writeSidecar(
        sidecar,
        { sha256, identity: fileIdentity(stats) },
        this.#temporaryDirectory,
      );
      sidecarWritten = true;
      await renameIntoPlace(temporary, this.#objectPath(key));
      return { key, size: meter.byteCount, sha256, lastModified: stats.mtime };
    } catch (error) {
      await this.#removeAfterFailure(temporary);
      if (sidecarWritten) {
        await this.#removeAfterFailure(sidecar);
      }
      throw toStorageError("publish", key, this.root, error);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    validateKey(key);
    if (range) {
      checkRange(key, range);
    }
    const { handle, size } = await this.#openObject(key);
    if (!range) {
      return handle.createReadStream();
    }
    if (range.start >= size) {
      await handle.close();
      throw rangeNotSatisfiable(key, range.start, range.end, size);
    }
    return handle.createReadStream({ start: range.start, end: Math.min(range.end, size - 1) });
  }

  async read(key: string, offset: number, length: number): Promise<Buffer> {
    validateKey(key);
    checkReadWindow(key, offset, length);
    const { handle, size } = await this.#openObject(key);
    try {
      if (offset + length > size) {
        throw rangeNotSatisfiable(key, offset, offset + length - 1, size);
      }
      const buffer = Buffer.allocUnsafe(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
        if (bytesRead === 0) {
          // The file shrank after the size check: another writer replaced it in place.
          throw rangeNotSatisfiable(key, offset, offset + length - 1, offset + filled);
        }
        filled += bytesRead;
      }
      return buffer;
    } catch (error) {
      throw toStorageError("read", key, this.root, error);
    } finally {
      await handle.close();
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    validateKey(key);
    try {
      const stats = await stat(this.#objectPath(key), { bigint: true });
      if (!stats.isFile()) {
        return undefined;
      }
      const sha256 = await readSidecarSha256(this.#sidecarPath(key), fileIdentity(stats));
      const info: ObjectInfo = { key, size: Number(stats.size), lastModified: stats.mtime };
      return sha256 === undefined ? info : { ...info, sha256 };
    } catch (error) {
      if (errnoOf(error) === "ENOENT" || errnoOf(error) === "ENOTDIR") {
        return undefined;
      }
      throw toStorageError("stat", key, this.root, error);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    validatePrefix(prefix);
    // Only the directory that contains the prefix's last segment can contain matches.
    const slash = prefix.lastIndexOf("/");
    const directoryKey = slash >= 0 ? prefix.slice(0, slash) : "";
    const objects: ObjectInfo[] = [];
    try {
      await this.#collect(directoryKey, prefix, objects);
    } catch (error) {
      throw toStorageError("list", prefix, this.root, error);
    }
    return objects.sort((a, b) => compareKeys(a.key, b.key));
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    const path = this.#objectPath(key);
    const sidecar = this.#sidecarPath(key);
    try {
      const stats = await stat(path).catch(() => undefined);
      // A directory under the key is a prefix of other keys, not an object, so there is nothing to delete.
      if (stats?.isFile()) {
        await removeFile(path);
      }
      await removeFile(sidecar);
    } catch (error) {
      throw toStorageError("delete", key, this.root, error);
    }
    await pruneEmptyDirectories(dirname(path), this.root);
    await pruneEmptyDirectories(dirname(sidecar), this.#sidecarRoot);
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
    for (const object of objects) {
      await this.delete(object.key);
    }
    return objects.length;
  }

  async ping(): Promise<void> {
    try {
      await mkdir(this.#temporaryDirectory, { recursive: true });
      await access(this.root, constants.R_OK | constants.W_OK);
      await access(this.#temporaryDirectory, constants.R_OK | constants.W_OK);
    } catch (error) {
      throw new StorageError(
        "UNAVAILABLE",
        `Local storage root ${this.root} is not a writable directory: ${describeError(error)}. Check PIFA_STORAGE_URL or PIFA_DATA_DIR and the directory's permissions.`,
        { cause: error },
      );
    }
  }

  /** Removes a file left by a failed write; a failure here is logged so that it does not hide the original error. */
  async #removeAfterFailure(path: string): Promise<void> {
    try {
      await removeFile(path);
    } catch (error) {
      this.#logger?.warn(
        { path, error: describeError(error) },
        "Failed to remove a file left by a failed write",
      );
    }
  }

  #objectPath(key: string): string {
    return join(this.root, ...key.split("/"));
  }

  #sidecarPath(key: string): string {
    return `${join(this.#sidecarRoot, ...key.split("/"))}.json`;
  }

  /** Streams the body into a new temporary file; on failure the file is removed and a `StorageError` thrown. */
  async #writeTemporary(
    key: string,
    body: Readable,
    maxBytes: number | undefined,
  ): Promise<{ meter: BodyMeter; temporary: string }> {
    try {
      await mkdir(this.#temporaryDirectory, { recursive: true });
    } catch (error) {
      throw toStorageError("store", key, this.root, error);
    }
    const meter = meterBody(key, body, maxBytes);
    const temporary = join(this.#temporaryDirectory, `${randomUUID()}.tmp`);
    const sink = new FileSink(temporary);
    try {
      await pipeline(meter, sink);
    } catch (error) {
      // pipeline rejects at the first error, possibly before the sink has created its file.
      // Its 'close' comes after that, so the file cannot appear after the removal below.
      if (!sink.closed) await new Promise((resolve) => sink.once("close", resolve));
      await this.#removeAfterFailure(temporary);
      throw meter.failure ?? toStorageError("store", key, this.root, error);
    }
    return { meter, temporary };
  }

  async #openObject(key: string): Promise<{ handle: FileHandle; size: number }> {
    let handle: FileHandle;
    try {
      handle = await open(this.#objectPath(key), "r");
    } catch (error) {
      const errno = errnoOf(error);
      throw errno === "ENOENT" || errno === "ENOTDIR"
        ? this.#notFound(key, error)
        : toStorageError("open", key, this.root, error);
    }
    const stats = await handle.stat();
    if (!stats.isFile()) {
      await handle.close();
      throw this.#notFound(key);
    }
    return { handle, size: stats.size };
  }

  #notFound(key: string, cause?: unknown): StorageError {
    return new StorageError(
      "NOT_FOUND",
      `No object is stored at ${JSON.stringify(key)} under ${this.root}.`,
      {
        key,
        cause,
      },
    );
  }

  /** Appends the files under `directoryKey` whose keys start with `prefix`, descending only into directories that can match. */
  async #collect(directoryKey: string, prefix: string, objects: ObjectInfo[]): Promise<void> {
    const directory = directoryKey === "" ? this.root : this.#objectPath(directoryKey);
    let entries: Dirent[];
    try {
      entries = await readdir(directory, { withFileTypes: true });
    } catch (error) {
      if (errnoOf(error) === "ENOENT" || errnoOf(error) === "ENOTDIR") {
        return;
      }
      throw error;
    }
    for (const entry of entries) {
      const key = directoryKey === "" ? entry.name : `${directoryKey}/${entry.name}`;
      if (isReservedKey(key)) {
        continue;
      }
      if (entry.isDirectory()) {
        const asPrefix = `${key}/`;
        if (asPrefix.startsWith(prefix) || prefix.startsWith(asPrefix)) {
          await this.#collect(key, prefix, objects);
        }
      } else if (entry.isFile() && key.startsWith(prefix)) {
        // A file deleted between readdir and stat is no longer an object, so it is skipped.
        const stats = await stat(join(directory, entry.name)).catch((error: unknown) => {
          if (errnoOf(error) === "ENOENT") return undefined;
          throw error;
        });
        if (stats) objects.push({ key, size: stats.size, lastModified: stats.mtime });
      }
    }
  }
}
