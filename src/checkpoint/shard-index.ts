/** Parsing of `model.safetensors.index.json`, the map from tensor names to shard files. */
import { CheckpointError, preview, quote } from "./errors.ts";
import { findDuplicateKey } from "./json-keys.ts";
import { checkShardName, checkTensorName } from "./names.ts";

export const SAFETENSORS_FILE_NAME = "model.safetensors";
export const SAFETENSORS_INDEX_NAME = "model.safetensors.index.json";

/** Index size cap in bytes. An index of 100,000 tensors takes about 10 MB. */
export const MAX_INDEX_BYTES = 100_000_000;

/** Cap on the number of tensors one index may list. */
export const MAX_INDEXED_TENSORS = 1_000_000;

export interface ShardIndex {
  /** The index's `metadata` object as stored (typically `{ total_size }`); not validated further. */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Tensor name to shard file name. */
  readonly weightMap: ReadonlyMap<string, string>;
  /** Distinct shard names in sorted order. */
  readonly shardNames: readonly string[];
}

function invalidIndex(problem: string, cause?: unknown): CheckpointError {
  return new CheckpointError(
    "INVALID_INDEX",
    `${SAFETENSORS_INDEX_NAME} ${problem}: upload the index written with the checkpoint`,
    cause === undefined ? undefined : { cause },
  );
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Validates the bytes of a shard index. Shard files are not touched. */
export function parseShardIndex(bytes: Uint8Array): ShardIndex {
  if (bytes.byteLength > MAX_INDEX_BYTES) {
    throw invalidIndex(`has ${bytes.byteLength} bytes, above the limit of ${MAX_INDEX_BYTES}`);
  }

  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (error) {
    throw invalidIndex("is not valid UTF-8", error);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw invalidIndex(`is not valid JSON (${(error as Error).message})`, error);
  }
  if (!isPlainObject(value)) throw invalidIndex("is not a JSON object");

  const duplicate = findDuplicateKey(text);
  if (duplicate !== undefined) {
    const where = duplicate.path.map((key) => quote(key)).join(" > ");
    throw new CheckpointError(
      "DUPLICATE_KEY",
      `${SAFETENSORS_INDEX_NAME} repeats the key ${quote(duplicate.key)}${where ? ` inside ${where}` : ""}: readers disagree on which entry wins, so re-export the checkpoint`,
    );
  }

  const metadata = value.metadata ?? {};
  if (!isPlainObject(metadata)) throw invalidIndex("has a metadata field that is not an object");
  const weightMapJson = value.weight_map;
  if (!isPlainObject(weightMapJson)) {
    throw invalidIndex("has no weight_map object mapping tensor names to shard files");
  }

  const entries = Object.entries(weightMapJson);
  if (entries.length > MAX_INDEXED_TENSORS) {
    throw new CheckpointError(
      "TOO_MANY_TENSORS",
      `${SAFETENSORS_INDEX_NAME} lists ${entries.length} tensors, above the limit of ${MAX_INDEXED_TENSORS}`,
    );
  }

  const weightMap = new Map<string, string>();
  const shards = new Set<string>();
  for (const [tensorName, shardName] of entries) {
    checkTensorName(tensorName, `${SAFETENSORS_INDEX_NAME} weight_map`);
    if (typeof shardName !== "string") {
      throw invalidIndex(
        `maps tensor ${quote(tensorName)} to ${preview(shardName)}, expected a shard file name`,
      );
    }
    checkShardName(shardName, `${SAFETENSORS_INDEX_NAME} entry for tensor ${quote(tensorName)}`);
    weightMap.set(tensorName, shardName);
    shards.add(shardName);
  }

  return {
    metadata: Object.freeze({ ...metadata }),
    weightMap,
    shardNames: [...shards].sort(),
  };
}
