import { randomUUID } from "node:crypto";
import type { BigIntStats } from "node:fs";
import { mkdir, readFile, rename, rm, rmdir, writeFile } from "node:fs/promises";
import { dirname, relative, sep } from "node:path";
import { describeError, StorageError } from "./errors.ts";

/** Node.js system error with its `errno` name, such as `ENOENT`. */
type SystemError = Error & { code?: string };

export function errnoOf(error: unknown): string | undefined {
  return error instanceof Error ? (error as SystemError).code : undefined;
}

/**
 * Maps a filesystem error to a `StorageError`: a missing file is `NOT_FOUND`, a file that is
 * where a directory must go (or the reverse) is `CONFLICT`, and anything else is `UNAVAILABLE`.
 */
export function toStorageError(
  operation: string,
  key: string,
  root: string,
  error: unknown,
): StorageError {
  if (error instanceof StorageError) {
    return error;
  }
  const errno = errnoOf(error);
  const where = `${JSON.stringify(key)} under ${root}`;
  switch (errno) {
    case "ENOENT":
      return new StorageError("NOT_FOUND", `No object is stored at ${where}.`, {
        key,
        cause: error,
      });
    case "ENOTDIR":
    case "EISDIR":
    case "EEXIST":
    case "ENOTEMPTY":
      return new StorageError(
        "CONFLICT",
        `Cannot ${operation} ${where}: local storage cannot hold a key that is also the prefix of another key (${errno}). Use distinct key paths.`,
        { key, cause: error },
      );
    case "ENAMETOOLONG":
      return new StorageError(
        "INVALID_KEY",
        `Cannot ${operation} ${where}: the path is too long for the filesystem.`,
        {
          key,
          cause: error,
        },
      );
    default:
      return new StorageError(
        "UNAVAILABLE",
        `Local storage failed to ${operation} ${where}: ${describeError(error)}. Check free space and permissions of ${root}.`,
        { key, cause: error },
      );
  }
}

/** Removes a file, ignoring a missing one. */
export async function removeFile(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** Renames `source` to `target`, creating the target's parent directories first. */
export async function renameIntoPlace(source: string, target: string): Promise<void> {
  // A concurrent delete can prune the freshly created parent before the rename, which then fails
  // with ENOENT; creating the parent again and retrying covers that race.
  for (let attempt = 1; ; attempt++) {
    await mkdir(dirname(target), { recursive: true });
    try {
      await rename(source, target);
      return;
    } catch (error) {
      if (errnoOf(error) !== "ENOENT" || attempt >= 3) {
        throw error;
      }
    }
  }
}

/** Removes `directory` and then each parent while they are empty, stopping before `stopAt`. */
export async function pruneEmptyDirectories(directory: string, stopAt: string): Promise<void> {
  let current = directory;
  for (;;) {
    const fromStop = relative(stopAt, current);
    if (fromStop === "" || fromStop.startsWith("..") || fromStop.startsWith(sep)) {
      return;
    }
    try {
      await rmdir(current);
    } catch {
      // Not empty, already gone or not removable: the directories above are then in use too.
      return;
    }
    current = dirname(current);
  }
}

/**
 * Contents of a SHA-256 sidecar. `identity` ties the checksum to one file version, so a sidecar
 * left over from an earlier version of the object is never reported for a newer one.
 */
interface Sidecar {
  sha256: string;
  identity: string;
}

/** Inode, size and modification time in nanoseconds: these stay the same across a rename and change with every rewrite. */
export function fileIdentity(stats: BigIntStats): string {
  return `${stats.ino}:${stats.size}:${stats.mtimeNs}`;
}

/** Writes a sidecar atomically through a temporary file in `temporaryDirectory`. */
export async function writeSidecar(
  path: string,
  sidecar: Sidecar,
  temporaryDirectory: string,
): Promise<void> {
  const temporary = `${temporaryDirectory}${sep}${randomUUID()}.json`;
  try {
    await writeFile(temporary, JSON.stringify(sidecar), { flush: true });
    await renameIntoPlace(temporary, path);
  } catch (error) {
    await removeFile(temporary);
    throw error;
  }
}

/** Returns the sidecar's SHA-256 when the sidecar exists and belongs to the file with `identity`. */
export async function readSidecarSha256(
  path: string,
  identity: string,
): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if (errnoOf(error) === "ENOENT" || errnoOf(error) === "ENOTDIR") {
      return undefined;
    }
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Sidecars are written through a rename and so are never partial; an unreadable one was
    // edited by hand, and the checksum is then unknown.
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null) {
    return undefined;
  }
  const sidecar = parsed as Partial<Sidecar>;
  return sidecar.identity === identity && typeof sidecar.sha256 === "string"
    ? sidecar.sha256
    : undefined;
}
