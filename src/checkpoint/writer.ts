/**
 * Streaming safetensors writer. The caller declares every tensor up front,
 * then passes tensor bytes in plan order as they are produced, so no more than
 * one tensor is held in memory. Files are written under temporary names in the
 * output directory and renamed on `close()`.
 */
import { randomBytes } from "node:crypto";
import { type FileHandle, open, rename, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Dtype } from "./dtypes.ts";
import { CheckpointError, quote } from "./errors.ts";
import { assertLittleEndianHost } from "./float-codec.ts";
import { SAFETENSORS_INDEX_NAME } from "./shard-index.ts";
import {
  buildIndexJson,
  layoutShards,
  normalizeMetadata,
  type PlannedTensor,
  type ShardLayout,
  type ShardLayoutTensor,
} from "./writer-plan.ts";

export type { PlannedTensor } from "./writer-plan.ts";

export interface SafetensorsWriterOptions {
  /** Existing output directory. Files of the same names in it are replaced. */
  readonly directory: string;
  /** Every tensor to write, in the order `writeTensor` will receive them. */
  readonly tensors: readonly PlannedTensor[];
  /** String metadata for every shard's `__metadata__`. Its `format` defaults to "pt". */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Tensor data bytes per shard (headers not counted). Without it the output is one file. */
  readonly maxShardBytes?: number;
}

export interface WriteResult {
  /** Final file names in the directory: the shards, then the index when there is one. */
  readonly files: readonly string[];
  /** Tensor data bytes over all shards, as in the index's `metadata.total_size`. */
  readonly totalSize: number;
}

export type TensorData = Buffer | ArrayBufferView;

/** Typed-array types whose element type fixes the dtypes they may carry. */
const TYPED_ARRAY_DTYPES: ReadonlyArray<
  [new (...args: never[]) => ArrayBufferView, readonly Dtype[]]
> = [
  [Float32Array, ["F32"]],
  [Float64Array, ["F64"]],
  [Int8Array, ["I8"]],
  [Int16Array, ["I16"]],
  [Uint16Array, ["U16", "F16", "BF16"]],
  [Int32Array, ["I32"]],
  [Uint32Array, ["U32"]],
  [BigInt64Array, ["I64"]],
  [BigUint64Array, ["U64"]],
];

/** Largest single write call. Linux write(2) transfers at most 0x7ffff000 bytes per call. */
const MAX_WRITE_CHUNK = 1 << 30;

type WriterState = "open" | "closed" | "aborted" | "failed";

interface OpenShard {
  layout: ShardLayout;
  handle: FileHandle;
  position: number;
  written: number;
}

function temporaryName(fileName: string): string {
  return `.${fileName}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
}

async function removeIfPresent(path: string): Promise<void> {
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
}

export class SafetensorsWriter {
  readonly directory: string;
  readonly shards: readonly ShardLayout[];
  private readonly order: Array<{ shard: number; tensor: ShardLayoutTensor; byteLength: number }> =
    [];
  private readonly temporaryPaths: string[];
  private readonly finalPaths: string[] = [];
  private cursor = 0;
  private current: OpenShard | undefined;
  private state: WriterState = "open";
  private pending: Promise<void> | undefined;

  private constructor(directory: string, shards: readonly ShardLayout[]) {
    this.directory = directory;
    this.shards = shards;
    this.temporaryPaths = shards.map((shard) => join(directory, temporaryName(shard.fileName)));
    shards.forEach((shard, index) => {
      for (const tensor of shard.tensors) {
        this.order.push({ shard: index, tensor, byteLength: tensor.byteLength });
      }
    });
  }

  /** Validates the plan and prepares the shard layout. No file is created until the first write. */
  static create(options: SafetensorsWriterOptions): SafetensorsWriter {
    const metadata = normalizeMetadata(options.metadata);
    const shards = layoutShards(options.tensors, metadata, options.maxShardBytes);
    return new SafetensorsWriter(options.directory, shards);
  }

  /** Final file names, shards first, then the index for a sharded layout. */
  get fileNames(): string[] {
    const names = this.shards.map((shard) => shard.fileName);
    if (this.shards.length > 1) names.push(SAFETENSORS_INDEX_NAME);
    return names;
  }

  private assertUsable(action: string): void {
    if (this.state !== "open") {
      throw new CheckpointError(
        "WRITER_CLOSED",
        `cannot ${action}: the writer is ${this.state === "failed" ? "failed after an I/O error (call abort())" : this.state}`,
      );
    }
    if (this.pending !== undefined) {
      throw new CheckpointError(
        "WRITER_BUSY",
        `cannot ${action} while a write is in progress: await each writeTensor call before the next`,
      );
    }
  }

  private bytesOf(name: string, dtype: Dtype, data: TensorData): Uint8Array {
    for (const [type, dtypes] of TYPED_ARRAY_DTYPES) {
      if (data instanceof type && !dtypes.includes(dtype)) {
        throw new CheckpointError(
          "WRITE_DTYPE_MISMATCH",
          `tensor ${quote(name)} is planned as ${dtype} but received a ${type.name}: pass ${dtype} bytes (a Buffer, or a typed array of that element type)`,
        );
      }
    }
    if (!(data instanceof Uint8Array) && !(data instanceof DataView)) assertLittleEndianHost();
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }

  /**
   * Writes the next tensor of the plan. `data` must be the tensor's
   * little-endian bytes, exactly its planned byte length. Await each call before the next.
   */
  async writeTensor(name: string, data: TensorData): Promise<void> {
    this.assertUsable(`write tensor ${quote(name)}`);
    const next = this.order[this.cursor];
    if (next === undefined || next.tensor.name !== name) {
      const expected =
        next === undefined
          ? "no more tensors (all planned tensors are written)"
          : `tensor ${quote(next.tensor.name)}`;
      throw new CheckpointError(
        "WRITE_OUT_OF_ORDER",
        `received tensor ${quote(name)} but the plan expects ${expected}: write tensors in plan order`,
      );
    }
    const bytes = this.bytesOf(name, next.tensor.dtype, data);
    if (bytes.byteLength !== next.byteLength) {
      throw new CheckpointError(
        "WRITE_SIZE_MISMATCH",
        `tensor ${quote(name)} received ${bytes.byteLength} bytes but shape [${next.tensor.shape.join(", ")}] x ${next.tensor.dtype} needs ${next.byteLength}`,
      );
    }

    this.pending = this.writeNext(next.shard, bytes);
    try {
      await this.pending;
      this.cursor++;
    } catch (error) {
      if (this.state === "open") this.state = "failed";
      throw error;
    } finally {
      this.pending = undefined;
    }
  }

  private async writeNext(shardIndex: number, bytes: Uint8Array): Promise<void> {
    let shard = this.current;
    if (shard === undefined) shard = await this.openShard(shardIndex);
    await this.writeAll(shard, bytes);
    shard.written++;
    if (shard.written === shard.layout.tensors.length) await this.finishShard(shard);
  }

  private async openShard(index: number): Promise<OpenShard> {
    const layout = this.shards[index];
    const handle = await open(this.temporaryPaths[index], "wx");
    const shard: OpenShard = { layout, handle, position: 0, written: 0 };
    this.current = shard;
    await this.writeAll(shard, layout.header);
    return shard;
  }

  private async writeAll(shard: OpenShard, bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.byteLength) {
      const length = Math.min(bytes.byteLength - offset, MAX_WRITE_CHUNK);
      const { bytesWritten } = await shard.handle.write(bytes, offset, length, shard.position);
      if (bytesWritten === 0) {
        throw new Error(
          `write to ${shard.layout.fileName} made no progress at byte ${shard.position}`,
        );
      }
      offset += bytesWritten;
      shard.position += bytesWritten;
    }
  }

  private async finishShard(shard: OpenShard): Promise<void> {
    await shard.handle.sync();
    await shard.handle.close();
    this.current = undefined;
  }

  /**
   * Renames every shard to its final name, then writes the index (last, so a
   * reader that finds the index finds every shard). Raises WRITE_INCOMPLETE
   * when tensors are missing, and the writer then stays open so the caller can finish or abort.
   */
  async close(): Promise<WriteResult> {
    this.assertUsable("close");
    if (this.cursor < this.order.length) {
      const next = this.order[this.cursor].tensor.name;
      throw new CheckpointError(
        "WRITE_INCOMPLETE",
        `cannot close: ${this.order.length - this.cursor} of ${this.order.length} planned tensors are not written, next is ${quote(next)}; write them or call abort()`,
      );
    }

    this.pending = this.publish();
    try {
      await this.pending;
    } catch (error) {
      if (this.state === "open") this.state = "failed";
      throw error;
    } finally {
      this.pending = undefined;
    }
    if (this.state !== "open") {
      throw new CheckpointError("WRITER_CLOSED", "abort() was called while close() was running");
    }

    this.state = "closed";
    return {
      files: this.fileNames,
      totalSize: this.shards.reduce((sum, shard) => sum + shard.dataBytes, 0),
    };
  }

  /** Renames the finished temporary files to their final names, the index last. */
  private async publish(): Promise<void> {
    // A plan without tensors still produces a file: one shard with only a header.
    if (this.shards.length === 1 && this.shards[0].tensors.length === 0) {
      await this.finishShard(await this.openShard(0));
    }
    for (let i = 0; i < this.shards.length; i++) {
      const finalPath = join(this.directory, this.shards[i].fileName);
      await rename(this.temporaryPaths[i], finalPath);
      this.finalPaths.push(finalPath);
    }
    if (this.shards.length > 1) {
      const temporaryIndex = join(this.directory, temporaryName(SAFETENSORS_INDEX_NAME));
      this.temporaryPaths.push(temporaryIndex);
      await writeFile(temporaryIndex, buildIndexJson(this.shards), { flag: "wx" });
      const finalIndex = join(this.directory, SAFETENSORS_INDEX_NAME);
      await rename(temporaryIndex, finalIndex);
      this.finalPaths.push(finalIndex);
    }
  }

  /**
   * Removes every file this writer created, including shards already renamed
   * by a `close()` that failed part-way. Does nothing after a successful close.
   */
  async abort(): Promise<void> {
    if (this.state === "closed" || this.state === "aborted") return;
    this.state = "aborted";
    await this.pending?.catch(() => undefined);
    if (this.current !== undefined) {
      await this.current.handle.close().catch(() => undefined);
      this.current = undefined;
    }
    for (const path of [...this.temporaryPaths, ...this.finalPaths]) await removeIfPresent(path);
  }
}

/**
 * Validates the plan and checks that the output directory exists, then
 * returns a writer. No file is created until the first tensor is written.
 */
export async function createSafetensorsWriter(
  options: SafetensorsWriterOptions,
): Promise<SafetensorsWriter> {
  const writer = SafetensorsWriter.create(options);
  const stats = await stat(options.directory);
  if (!stats.isDirectory()) {
    throw new Error(
      `output path ${options.directory} is not a directory: create the directory first`,
    );
  }
  return writer;
}
