import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { BufferByteSource, type ByteSource } from "../../src/checkpoint/byte-source.ts";
import { CheckpointError, type CheckpointErrorCode } from "../../src/checkpoint/errors.ts";
import { openSafetensors, type SafetensorsFile } from "../../src/checkpoint/safetensors.ts";

export const FIXTURE_DIR = new URL("../fixtures/stories260K/", import.meta.url).pathname;

export interface AssembleOptions {
  /** Value written into the 8-byte length prefix instead of the header's byte length. */
  declaredLength?: bigint;
}

/**
 * Builds safetensors bytes by hand: a u64 little-endian length, the header
 * (a string or raw bytes, used exactly as given, or an object to stringify),
 * then `data` (bytes, or a count of zero bytes).
 */
export function assemble(
  header: string | Uint8Array | object,
  data: Uint8Array | number = 0,
  options: AssembleOptions = {},
): Buffer {
  let headerBytes: Buffer;
  if (typeof header === "string") headerBytes = Buffer.from(header, "utf8");
  else if (header instanceof Uint8Array) headerBytes = Buffer.from(header);
  else headerBytes = Buffer.from(JSON.stringify(header), "utf8");

  const dataBytes = typeof data === "number" ? Buffer.alloc(data) : Buffer.from(data);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(options.declaredLength ?? BigInt(headerBytes.byteLength));
  return Buffer.concat([prefix, headerBytes, dataBytes]);
}

export function openBytes(bytes: Uint8Array): Promise<SafetensorsFile> {
  return openSafetensors(new BufferByteSource(bytes));
}

/** Awaits `promise` and asserts it rejects with a CheckpointError of `code`; returns the error. */
export async function expectCheckpointError(
  promise: Promise<unknown> | (() => unknown),
  code: CheckpointErrorCode,
): Promise<CheckpointError> {
  let caught: unknown;
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a CheckpointError ${code}`).toBeInstanceOf(CheckpointError);
  const error = caught as CheckpointError;
  expect(error.code, error.message).toBe(code);
  return error;
}

/** A ByteSource wrapper that records every read, to check how much of a file is touched. */
export class RecordingSource implements ByteSource {
  readonly reads: Array<{ offset: number; length: number }> = [];
  private readonly inner: ByteSource;

  constructor(inner: ByteSource) {
    this.inner = inner;
  }

  get size(): bigint | number {
    return this.inner.size;
  }

  read(offset: number, length: number): Promise<Buffer> {
    this.reads.push({ offset, length });
    return this.inner.read(offset, length);
  }
}

/** A ByteSource that reports a size but returns fewer bytes, like a file truncated after stat. */
export class ShrunkSource implements ByteSource {
  readonly size: number;
  private readonly bytes: Buffer;

  constructor(bytes: Buffer, reportedSize: number) {
    this.bytes = bytes;
    this.size = reportedSize;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return this.bytes.subarray(
      Math.min(offset, this.bytes.length),
      Math.min(offset + length, this.bytes.length),
    );
  }
}

export async function withTempDir<T>(run: (directory: string) => Promise<T>): Promise<T> {
  const directory = await mkdtemp(join(tmpdir(), "pifa-checkpoint-"));
  try {
    return await run(directory);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** Row-major float32 values 0, 1, 2, ... scaled, for recognizable tensor contents. */
export function ramp(count: number, scale = 1, start = 0): Float32Array {
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = (start + i) * scale;
  return values;
}
