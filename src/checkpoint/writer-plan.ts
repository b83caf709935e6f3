/**
 * Layout of a safetensors write: plan validation, assignment of tensors to
 * shards, and the header and index JSON. No file I/O happens here.
 */
import { DTYPE_SIZES, type Dtype, isDtype } from "./dtypes.ts";
import { CheckpointError, quote } from "./errors.ts";
import { MAX_TENSOR_RANK } from "./header.ts";
import { checkTensorName } from "./names.ts";
import { SAFETENSORS_FILE_NAME } from "./shard-index.ts";

export interface PlannedTensor {
  readonly name: string;
  /** A safetensors dtype name; anything else raises INVALID_PLAN. */
  readonly dtype: string;
  readonly shape: readonly number[];
}

export interface ShardLayoutTensor {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly byteLength: number;
  /** Offsets relative to the shard's data section. */
  readonly dataOffsets: readonly [number, number];
}

export interface ShardLayout {
  /** Final file name, e.g. `model-00001-of-00003.safetensors`. */
  readonly fileName: string;
  readonly tensors: readonly ShardLayoutTensor[];
  /** Header bytes: the 8-byte length prefix followed by space-padded JSON. */
  readonly header: Buffer;
  readonly dataBytes: number;
}

function invalidPlan(message: string): CheckpointError {
  return new CheckpointError("INVALID_PLAN", `writer plan: ${message}`);
}

/** Validates one planned tensor and returns its dtype and byte length. */
function validatePlannedTensor(tensor: PlannedTensor): { dtype: Dtype; byteLength: number } {
  try {
    checkTensorName(tensor.name, "writer plan");
  } catch (error) {
    if (error instanceof CheckpointError) throw invalidPlan(error.message);
    throw error;
  }
  if (tensor.name === "__metadata__") {
    throw invalidPlan(`tensor name "__metadata__" is reserved for the metadata entry`);
  }
  if (!isDtype(tensor.dtype)) {
    throw invalidPlan(
      `tensor ${quote(tensor.name)} has unknown dtype ${JSON.stringify(tensor.dtype)}`,
    );
  }
  if (!Array.isArray(tensor.shape) || tensor.shape.length > MAX_TENSOR_RANK) {
    throw invalidPlan(
      `tensor ${quote(tensor.name)} needs a shape array of at most ${MAX_TENSOR_RANK} dimensions`,
    );
  }
  const dtype = tensor.dtype;
  let bytes = BigInt(DTYPE_SIZES[dtype]);
  for (const dim of tensor.shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      throw invalidPlan(
        `tensor ${quote(tensor.name)} has shape [${tensor.shape.join(", ")}]: dimensions must be safe integers >= 0`,
      );
    }
    bytes *= BigInt(dim);
  }
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw invalidPlan(
      `tensor ${quote(tensor.name)} needs ${bytes} bytes, above Number.MAX_SAFE_INTEGER`,
    );
  }
  return { dtype, byteLength: Number(bytes) };
}

/** Validates string metadata and returns it with `format: "pt"` unless the caller set a format. */
export function normalizeMetadata(
  metadata: Readonly<Record<string, string>> | undefined,
): Array<[string, string]> {
  const entries: Array<[string, string]> = [];
  if (metadata === undefined || !Object.hasOwn(metadata, "format")) {
    // transformers (load_state_dict in modeling_utils.py) raises OSError for a file that has
    // metadata without a format of pt, tf, flax or mlx.
    entries.push(["format", "pt"]);
  }
  for (const [key, value] of Object.entries(metadata ?? {})) {
    if (key === "__proto__" || key === "constructor" || key === "prototype") {
      throw invalidPlan(`metadata key ${quote(key)} collides with JavaScript object internals`);
    }
    if (typeof value !== "string") {
      throw invalidPlan(
        `metadata key ${quote(key)} has a ${typeof value} value, but safetensors metadata values must be strings`,
      );
    }
    entries.push([key, value]);
  }
  return entries;
}

function jsonObject(entries: ReadonlyArray<readonly [string, string]>): string {
  // Built by hand because a plain object would move integer-like keys to the front.
  return `{${entries.map(([key, json]) => `${JSON.stringify(key)}:${json}`).join(",")}}`;
}

/** Builds the length prefix and JSON header, padded with spaces so 8 + N is a multiple of 8. */
export function buildHeader(
  metadata: ReadonlyArray<readonly [string, string]>,
  tensors: readonly ShardLayoutTensor[],
): Buffer {
  const entries: Array<[string, string]> = [];
  if (metadata.length > 0) {
    entries.push([
      "__metadata__",
      jsonObject(metadata.map(([key, value]) => [key, JSON.stringify(value)])),
    ]);
  }
  for (const tensor of tensors) {
    const info = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: tensor.dataOffsets };
    entries.push([tensor.name, JSON.stringify(info)]);
  }
  const json = Buffer.from(jsonObject(entries), "utf8");
  const padding = (8 - (json.byteLength % 8)) % 8;

  const header = Buffer.alloc(8 + json.byteLength + padding, 0x20);
  header.writeBigUInt64LE(BigInt(json.byteLength + padding), 0);
  json.copy(header, 8);
  return header;
}

export function shardFileName(index: number, count: number): string {
  const width = Math.max(5, String(count).length);
  return `model-${String(index + 1).padStart(width, "0")}-of-${String(count).padStart(width, "0")}.safetensors`;
}

/**
 * Validates the plan and assigns tensors to shards in plan order. A shard is
 * closed when the next tensor would push its data past `maxShardBytes`, and a
 * tensor larger than the limit gets a shard of its own. Without a limit, or
 * when everything fits in one shard, the output is a single `model.safetensors`.
 */
export function layoutShards(
  plan: readonly PlannedTensor[],
  metadata: ReadonlyArray<readonly [string, string]>,
  maxShardBytes?: number,
): ShardLayout[] {
  if (maxShardBytes !== undefined && (!Number.isSafeInteger(maxShardBytes) || maxShardBytes <= 0)) {
    throw invalidPlan(`maxShardBytes ${maxShardBytes} must be a positive integer`);
  }
  const seen = new Set<string>();
  const groups: Array<Array<Omit<ShardLayoutTensor, "dataOffsets">>> = [[]];
  let groupBytes = 0;
  for (const tensor of plan) {
    const { dtype, byteLength } = validatePlannedTensor(tensor);
    if (seen.has(tensor.name)) throw invalidPlan(`tensor ${quote(tensor.name)} is planned twice`);
    seen.add(tensor.name);

    let group = groups[groups.length - 1];
    if (
      maxShardBytes !== undefined &&
      group.length > 0 &&
      groupBytes + byteLength > maxShardBytes
    ) {
      group = [];
      groups.push(group);
      groupBytes = 0;
    }
    group.push({ name: tensor.name, dtype, shape: [...tensor.shape], byteLength });
    groupBytes += byteLength;
  }

  return groups.map((group, index) => {
    let offset = 0;
    const tensors: ShardLayoutTensor[] = group.map((tensor) => {
      const dataOffsets: [number, number] = [offset, offset + tensor.byteLength];
      offset += tensor.byteLength;
      return { ...tensor, dataOffsets };
    });
    const fileName =
      groups.length === 1 ? SAFETENSORS_FILE_NAME : shardFileName(index, groups.length);
    return { fileName, tensors, header: buildHeader(metadata, tensors), dataBytes: offset };
  });
}

/** Builds `model.safetensors.index.json` for a sharded layout. */
export function buildIndexJson(shards: readonly ShardLayout[]): string {
  let totalSize = 0;
  const weightMap: string[] = [];
  for (const shard of shards) {
    totalSize += shard.dataBytes;
    for (const tensor of shard.tensors) {
      weightMap.push(`    ${JSON.stringify(tensor.name)}: ${JSON.stringify(shard.fileName)}`);
    }
  }
  return `{\n  "metadata": {\n    "total_size": ${totalSize}\n  },\n  "weight_map": {\n${weightMap.join(",\n")}\n  }\n}\n`;
}
