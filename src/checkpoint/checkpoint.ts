/**
 * A Hugging Face checkpoint: one `model.safetensors`, or shards listed by
 * `model.safetensors.index.json`, presented as one tensor list.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { type ByteSource, FileByteSource } from "./byte-source.ts";
import { CheckpointError, quote } from "./errors.ts";
import type { TensorInfo } from "./header.ts";
import { checkShardName } from "./names.ts";
import {
  type OpenSafetensorsOptions,
  openSafetensors,
  type SafetensorsFile,
} from "./safetensors.ts";
import {
  MAX_INDEX_BYTES,
  parseShardIndex,
  SAFETENSORS_FILE_NAME,
  SAFETENSORS_INDEX_NAME,
  type ShardIndex,
} from "./shard-index.ts";

/** One file of an uploaded checkpoint, named as in the checkpoint directory. */
export interface NamedSource {
  readonly name: string;
  readonly source: ByteSource;
}

export interface CheckpointTensor extends TensorInfo {
  /** File name of the shard that stores the tensor. */
  readonly shard: string;
}

export class Checkpoint {
  /** Shard files by name; a single-file checkpoint has one shard, `model.safetensors`. */
  readonly shards: ReadonlyMap<string, SafetensorsFile>;
  /** Every tensor, shard by shard in shard-name order, each shard in data order. */
  readonly tensors: readonly CheckpointTensor[];
  /** The parsed index, or undefined for a single-file checkpoint. */
  readonly index: ShardIndex | undefined;
  private readonly byName: Map<string, CheckpointTensor>;
  private readonly ownedSources: FileByteSource[];

  constructor(
    shards: ReadonlyMap<string, SafetensorsFile>,
    tensors: readonly CheckpointTensor[],
    index: ShardIndex | undefined,
    ownedSources: FileByteSource[],
  ) {
    this.shards = shards;
    this.tensors = tensors;
    this.index = index;
    this.byName = new Map(tensors.map((tensor) => [tensor.name, tensor]));
    this.ownedSources = ownedSources;
  }

  /**
   * `__metadata__` of all shards merged into one object without a prototype.
   * Shards written together carry the same metadata, and where two differ the
   * later shard in name order wins.
   */
  get metadata(): Readonly<Record<string, string>> {
    const merged: Record<string, string> = Object.create(null);
    for (const file of this.shards.values()) Object.assign(merged, file.metadata);
    return Object.freeze(merged);
  }

  getTensor(name: string): CheckpointTensor | undefined {
    return this.byName.get(name);
  }

  private resolve(tensor: CheckpointTensor | string): { file: SafetensorsFile; name: string } {
    const name = typeof tensor === "string" ? tensor : tensor.name;
    const info = this.byName.get(name);
    const file = info === undefined ? undefined : this.shards.get(info.shard);
    if (info === undefined || file === undefined) {
      throw new RangeError(
        `tensor ${quote(name)} is not in this checkpoint: pass a name from its tensors list`,
      );
    }
    return { file, name };
  }

  /** Reads the raw bytes of one tensor from its shard. */
  async readTensorBytes(tensor: CheckpointTensor | string): Promise<Buffer> {
    const { file, name } = this.resolve(tensor);
    return file.readTensorBytes(name);
  }

  /** Reads one F32, F16 or BF16 tensor as float32 values in row-major order. */
  async readTensorFloat32(tensor: CheckpointTensor | string): Promise<Float32Array> {
    const { file, name } = this.resolve(tensor);
    return file.readTensorFloat32(name);
  }

  /** Closes the files this checkpoint opened from a directory. Caller-provided sources stay open. */
  async close(): Promise<void> {
    await Promise.all(this.ownedSources.map((source) => source.close()));
  }
}

async function readWhole(source: ByteSource, name: string): Promise<Buffer> {
  const size = BigInt(source.size);
  if (size > BigInt(MAX_INDEX_BYTES)) {
    throw new CheckpointError(
      "INVALID_INDEX",
      `${name} has ${size} bytes, above the limit of ${MAX_INDEX_BYTES}: upload the index written with the checkpoint`,
    );
  }
  const bytes = await source.read(0, Number(size));
  if (BigInt(bytes.byteLength) !== size) {
    throw new CheckpointError(
      "INVALID_INDEX",
      `read ${bytes.byteLength} of the ${size} bytes of ${name}: the file changed while it was read`,
    );
  }
  return bytes;
}

/**
 * Merges the shard tensor lists and checks them against the index: no tensor
 * in two shards, every indexed tensor in the shard the index names, and no
 * shard tensor missing from the index.
 */
function assembleTensors(
  shards: ReadonlyMap<string, SafetensorsFile>,
  index: ShardIndex | undefined,
): CheckpointTensor[] {
  const located = new Map<string, CheckpointTensor>();
  for (const [shard, file] of shards) {
    for (const info of file.tensors) {
      const earlier = located.get(info.name);
      if (earlier !== undefined) {
        throw new CheckpointError(
          "TENSOR_IN_TWO_SHARDS",
          `tensor ${quote(info.name)} is stored in both ${quote(earlier.shard)} and ${quote(shard)}: keep it in one shard and re-export the checkpoint`,
        );
      }
      located.set(info.name, { ...info, shard });
    }
  }
  if (index === undefined) return [...located.values()];

  for (const [name, shard] of index.weightMap) {
    const found = located.get(name);
    if (found === undefined || found.shard !== shard) {
      const actual = found === undefined ? "no shard stores it" : `it is in ${quote(found.shard)}`;
      throw new CheckpointError(
        "TENSOR_NOT_IN_SHARD",
        `${SAFETENSORS_INDEX_NAME} places tensor ${quote(name)} in ${quote(shard)}, but that shard does not contain it (${actual}): upload the matching index and shards`,
      );
    }
  }
  for (const tensor of located.values()) {
    if (!index.weightMap.has(tensor.name)) {
      throw new CheckpointError(
        "UNINDEXED_TENSOR",
        `shard ${quote(tensor.shard)} contains tensor ${quote(tensor.name)}, which ${SAFETENSORS_INDEX_NAME} does not list: upload the matching index and shards`,
      );
    }
  }
  return [...located.values()];
}

/** Opens a ByteSource for a checkpoint file name, or returns undefined when it is absent. */
type SourceLookup = (name: string) => Promise<ByteSource | undefined>;

async function openFromLookup(
  lookup: SourceLookup,
  fileListText: string,
  options: OpenSafetensorsOptions,
): Promise<{ shards: Map<string, SafetensorsFile>; index: ShardIndex | undefined }> {
  // A single file wins over an index, the order in which from_pretrained (transformers,
  // modeling_utils.py) looks for weights in a local directory.
  const single = await lookup(SAFETENSORS_FILE_NAME);
  if (single !== undefined) {
    const file = await openSafetensors(single, options);
    return { shards: new Map([[SAFETENSORS_FILE_NAME, file]]), index: undefined };
  }

  const indexSource = await lookup(SAFETENSORS_INDEX_NAME);
  if (indexSource === undefined) {
    throw new CheckpointError(
      "MISSING_CHECKPOINT",
      `found neither ${SAFETENSORS_FILE_NAME} nor ${SAFETENSORS_INDEX_NAME} (${fileListText}): upload the weights in Hugging Face safetensors layout`,
    );
  }
  const index = parseShardIndex(await readWhole(indexSource, SAFETENSORS_INDEX_NAME));

  const shards = new Map<string, SafetensorsFile>();
  for (const shardName of index.shardNames) {
    const source = await lookup(shardName);
    if (source === undefined) {
      throw new CheckpointError(
        "MISSING_SHARD",
        `${SAFETENSORS_INDEX_NAME} lists shard ${quote(shardName)}, which is missing (${fileListText}): upload every shard the index names`,
      );
    }
    try {
      shards.set(shardName, await openSafetensors(source, options));
    } catch (error) {
      if (error instanceof CheckpointError)
        error.message = `shard ${quote(shardName)}: ${error.message}`;
      throw error;
    }
  }
  return { shards, index };
}

async function openDirectory(
  directory: string,
  options: OpenSafetensorsOptions,
): Promise<Checkpoint> {
  const opened: FileByteSource[] = [];
  const lookup: SourceLookup = async (name) => {
    const path = join(directory, name);
    const stats = await stat(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT" || error.code === "ENOTDIR") return undefined;
      throw error;
    });
    if (stats === undefined || !stats.isFile()) return undefined;
    const source = await FileByteSource.open(path);
    opened.push(source);
    return source;
  };

  try {
    const { shards, index } = await openFromLookup(lookup, `in directory ${directory}`, options);
    return new Checkpoint(shards, assembleTensors(shards, index), index, opened);
  } catch (error) {
    await Promise.all(opened.map((source) => source.close()));
    throw error;
  }
}

async function openNamedSources(
  sources: readonly NamedSource[],
  options: OpenSafetensorsOptions,
): Promise<Checkpoint> {
  const byName = new Map<string, ByteSource>();
  for (const { name, source } of sources) {
    checkShardName(name, "checkpoint file list");
    if (byName.has(name)) {
      throw new CheckpointError(
        "DUPLICATE_SHARD",
        `checkpoint file list contains ${quote(name)} twice: upload each file once`,
      );
    }
    byName.set(name, source);
  }
  const names = [...byName.keys()];
  const fileListText =
    names.length === 0 ? "no files given" : `files given: ${names.slice(0, 8).join(", ")}`;
  const { shards, index } = await openFromLookup(
    async (name) => byName.get(name),
    fileListText,
    options,
  );
  return new Checkpoint(shards, assembleTensors(shards, index), index, []);
}

/**
 * Opens a checkpoint from a directory path or from a list of named sources.
 * `model.safetensors` is used when present, otherwise
 * `model.safetensors.index.json` and the shards it names. Files that neither
 * names are ignored. Every header is validated before this returns.
 */
export async function openCheckpoint(
  input: string | readonly NamedSource[],
  options: OpenSafetensorsOptions = {},
): Promise<Checkpoint> {
  if (typeof input === "string") return openDirectory(input, options);
  return openNamedSources(input, options);
}
