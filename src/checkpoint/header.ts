/**
 * Validation of a safetensors header. Every check runs on the parsed JSON
 * before anything is allocated from a number found in it, and sizes are
 * computed with BigInt so no product or sum can silently lose precision.
 */
import { DTYPE_SIZES, type Dtype, isDtype } from "./dtypes.ts";
import { CheckpointError, preview, quote } from "./errors.ts";
import { findDuplicateKey } from "./json-keys.ts";
import { checkTensorName, checkUnsafeName } from "./names.ts";

/** Header length cap in bytes, the MAX_HEADER_SIZE of the Hugging Face safetensors Rust crate. */
export const MAX_HEADER_BYTES = 100_000_000;

/**
 * Tensor count cap per file, an estimate with headroom: a mixture-of-experts
 * model with 256 experts, 3 projections each and 61 layers has about 47,000
 * expert weights, and FP8 checkpoints add one scale tensor per weight.
 */
export const MAX_TENSORS_PER_FILE = 200_000;

/** Dimension cap per tensor, the ndarray maximum of NumPy 2.4 (64). */
export const MAX_TENSOR_RANK = 64;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export interface TensorInfo {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  /** Offset of the first byte from the start of the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
  /** `data_offsets` as stored, relative to the start of the data section. */
  readonly dataOffsets: readonly [number, number];
}

export interface HeaderLimits {
  maxHeaderBytes: number;
  maxTensors: number;
}

export const DEFAULT_HEADER_LIMITS: HeaderLimits = {
  maxHeaderBytes: MAX_HEADER_BYTES,
  maxTensors: MAX_TENSORS_PER_FILE,
};

export interface ParsedHeader {
  /** String metadata from `__metadata__`, in an object without a prototype. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors in data-section order. */
  readonly tensors: readonly TensorInfo[];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describeJson(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

function decodeHeaderText(bytes: Uint8Array): string {
  try {
    // ignoreBOM keeps a leading byte order mark in the text, so JSON.parse rejects it.
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (error) {
    throw new CheckpointError(
      "HEADER_NOT_UTF8",
      `safetensors header (${bytes.byteLength} bytes) is not valid UTF-8: the file is corrupt or not a safetensors file`,
      { cause: error },
    );
  }
}

function parseHeaderJson(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new CheckpointError(
      "HEADER_NOT_JSON",
      `safetensors header is not valid JSON (${(error as Error).message}): the file is corrupt or not a safetensors file`,
      { cause: error },
    );
  }
  if (!isPlainObject(value)) {
    throw new CheckpointError(
      "HEADER_NOT_OBJECT",
      `safetensors header is ${describeJson(value)}, expected a JSON object of tensor entries: the file is not a safetensors file`,
    );
  }

  const duplicate = findDuplicateKey(text);
  if (duplicate !== undefined) {
    const where =
      duplicate.path.length > 0
        ? ` inside ${duplicate.path.map((key) => quote(key)).join(" > ")}`
        : "";
    throw new CheckpointError(
      "DUPLICATE_KEY",
      `safetensors header repeats the key ${quote(duplicate.key)}${where}: readers disagree on which entry wins, so re-export the checkpoint`,
    );
  }
  return value;
}

function parseMetadata(value: unknown): Readonly<Record<string, string>> {
  if (!isPlainObject(value)) {
    throw new CheckpointError(
      "INVALID_METADATA",
      `__metadata__ is ${describeJson(value)}, expected an object of string values`,
    );
  }
  const metadata: Record<string, string> = Object.create(null);
  for (const [key, entry] of Object.entries(value)) {
    if (key === "__proto__" || key === "constructor" || key === "prototype") {
      throw new CheckpointError(
        "INVALID_METADATA",
        `__metadata__ uses the key ${quote(key)}, which is rejected because it collides with JavaScript object internals`,
      );
    }
    if (typeof entry !== "string") {
      throw new CheckpointError(
        "INVALID_METADATA",
        `__metadata__ key ${quote(key)} is ${describeJson(entry)}, expected a string (safetensors metadata values are strings)`,
      );
    }
    metadata[key] = entry;
  }
  return Object.freeze(metadata);
}

function parseDtype(name: string, value: unknown): Dtype {
  if (!isDtype(value)) {
    const dtypeText = value === undefined ? "missing" : preview(value);
    throw new CheckpointError(
      "UNKNOWN_DTYPE",
      `tensor ${quote(name)}: dtype ${dtypeText} is not a safetensors dtype, expected one of ${Object.keys(DTYPE_SIZES).join(", ")}`,
    );
  }
  return value;
}

function parseShape(name: string, value: unknown): number[] {
  if (!Array.isArray(value)) {
    throw new CheckpointError(
      "INVALID_SHAPE",
      `tensor ${quote(name)}: shape is ${describeJson(value)}, expected an array of non-negative integers`,
    );
  }
  if (value.length > MAX_TENSOR_RANK) {
    throw new CheckpointError(
      "INVALID_SHAPE",
      `tensor ${quote(name)}: shape has ${value.length} dimensions, above the limit of ${MAX_TENSOR_RANK}`,
    );
  }
  const shape: number[] = [];
  for (const dim of value) {
    if (typeof dim !== "number" || !Number.isInteger(dim) || dim < 0) {
      throw new CheckpointError(
        "INVALID_SHAPE",
        `tensor ${quote(name)}: shape ${preview(value)} has the dimension ${preview(dim)}, expected non-negative integers`,
      );
    }
    if (dim > Number.MAX_SAFE_INTEGER) {
      throw new CheckpointError(
        "SHAPE_OVERFLOW",
        `tensor ${quote(name)}: shape dimension ${dim} exceeds Number.MAX_SAFE_INTEGER, so it cannot be represented exactly`,
      );
    }
    // `dim + 0` turns a JSON -0 into 0.
    shape.push(dim + 0);
  }
  return shape;
}

/** Returns the byte size of `shape` x `dtype`, raising SHAPE_OVERFLOW above 2^53 - 1. */
function byteSizeOf(name: string, shape: readonly number[], dtype: Dtype): number {
  let bytes = BigInt(DTYPE_SIZES[dtype]);
  for (const dim of shape) bytes *= BigInt(dim);
  if (bytes > MAX_SAFE) {
    throw new CheckpointError(
      "SHAPE_OVERFLOW",
      `tensor ${quote(name)}: shape [${shape.join(", ")}] x ${dtype} needs ${bytes} bytes, above Number.MAX_SAFE_INTEGER: the header is corrupt`,
    );
  }
  return Number(bytes);
}

function parseOffsets(name: string, value: unknown): [number, number] {
  const offsetsText = value === undefined ? "missing" : preview(value);
  if (!Array.isArray(value) || value.length !== 2) {
    throw new CheckpointError(
      "INVALID_OFFSETS",
      `tensor ${quote(name)}: data_offsets ${offsetsText} is not a [begin, end] pair of integers`,
    );
  }
  const [begin, end] = value;
  for (const offset of [begin, end]) {
    if (typeof offset !== "number" || !Number.isInteger(offset) || offset < 0) {
      throw new CheckpointError(
        "INVALID_OFFSETS",
        `tensor ${quote(name)}: data_offsets ${offsetsText} must be two non-negative integers`,
      );
    }
    if (offset > Number.MAX_SAFE_INTEGER) {
      throw new CheckpointError(
        "OFFSETS_OUT_OF_BOUNDS",
        `tensor ${quote(name)}: data_offsets ${offsetsText} exceed Number.MAX_SAFE_INTEGER, far past the end of any readable file`,
      );
    }
  }
  if (begin > end) {
    throw new CheckpointError(
      "INVALID_OFFSETS",
      `tensor ${quote(name)}: data_offsets ${offsetsText} has begin > end`,
    );
  }
  return [begin + 0, end + 0];
}

function parseTensorEntry(
  name: string,
  entry: unknown,
  dataStart: number,
  dataLength: bigint,
): TensorInfo {
  checkTensorName(name, "safetensors header");
  if (!isPlainObject(entry)) {
    throw new CheckpointError(
      "INVALID_TENSOR_ENTRY",
      `tensor ${quote(name)}: entry is ${describeJson(entry)}, expected an object with dtype, shape and data_offsets`,
    );
  }
  const dtype = parseDtype(name, entry.dtype);
  const shape = parseShape(name, entry.shape);
  const byteLength = byteSizeOf(name, shape, dtype);
  const [begin, end] = parseOffsets(name, entry.data_offsets);

  if (end - begin !== byteLength) {
    throw new CheckpointError(
      "SIZE_MISMATCH",
      `tensor ${quote(name)}: data_offsets [${begin}, ${end}] cover ${end - begin} bytes but shape [${shape.join(", ")}] x ${dtype} needs ${byteLength}: the header is corrupt, re-export the checkpoint`,
    );
  }
  const absoluteEnd = BigInt(dataStart) + BigInt(end);
  if (BigInt(end) > dataLength || absoluteEnd > MAX_SAFE) {
    throw new CheckpointError(
      "OFFSETS_OUT_OF_BOUNDS",
      `tensor ${quote(name)}: data_offsets [${begin}, ${end}] end past the data section of ${dataLength} bytes: the file is truncated or the header is corrupt, upload the complete file`,
    );
  }
  return {
    name,
    dtype,
    shape,
    byteOffset: dataStart + begin,
    byteLength,
    dataOffsets: [begin, end],
  };
}

/**
 * Sorts tensors by data offsets and checks that they tile the data section
 * exactly: no overlap, no gap, no trailing bytes. Zero-size tensors may sit at
 * any tensor boundary.
 */
function checkLayout(tensors: TensorInfo[], dataLength: bigint): void {
  tensors.sort(
    (a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1],
  );

  let cursor = 0;
  let previous: TensorInfo | undefined;
  for (const tensor of tensors) {
    const [begin, end] = tensor.dataOffsets;
    if (begin > cursor) {
      const after =
        previous === undefined ? "the start of the data section" : `tensor ${quote(previous.name)}`;
      throw new CheckpointError(
        "GAP_BETWEEN_TENSORS",
        `tensor ${quote(tensor.name)} starts at data offset ${begin} but ${after} ends at ${cursor}: ${begin - cursor} bytes belong to no tensor, so the header is corrupt; re-export the checkpoint`,
      );
    }
    if (begin < cursor && previous !== undefined) {
      const shared =
        begin === end
          ? `the zero-size tensor lies inside the other at offset ${begin}`
          : `they share bytes ${begin} to ${Math.min(cursor, end)}`;
      throw new CheckpointError(
        "OVERLAPPING_TENSORS",
        `tensors ${quote(previous.name)} [${previous.dataOffsets.join(", ")}] and ${quote(tensor.name)} [${begin}, ${end}] overlap (${shared}): the header is corrupt, re-export the checkpoint`,
      );
    }
    cursor = end;
    previous = tensor;
  }

  if (BigInt(cursor) !== dataLength) {
    throw new CheckpointError(
      "TRAILING_BYTES",
      `data section has ${dataLength} bytes but tensors cover only ${cursor}: ${dataLength - BigInt(cursor)} trailing bytes belong to no tensor, so the file was altered after writing; re-export it`,
    );
  }
}

/**
 * Validates the N header bytes of a safetensors file (everything after the
 * 8-byte length prefix). `dataLength` is the size of everything after the header.
 */
export function parseHeader(
  headerBytes: Uint8Array,
  dataLength: bigint,
  limits: HeaderLimits = DEFAULT_HEADER_LIMITS,
): ParsedHeader {
  const header = parseHeaderJson(decodeHeaderText(headerBytes));
  const dataStart = 8 + headerBytes.byteLength;

  const names = Object.keys(header);
  const tensorCount = names.length - (Object.hasOwn(header, "__metadata__") ? 1 : 0);
  if (tensorCount > limits.maxTensors) {
    throw new CheckpointError(
      "TOO_MANY_TENSORS",
      `safetensors header lists ${tensorCount} tensors, above the limit of ${limits.maxTensors} per file: split the checkpoint into more shards`,
    );
  }

  let metadata: Readonly<Record<string, string>> = Object.freeze(Object.create(null));
  const tensors: TensorInfo[] = [];
  for (const name of names) {
    if (name === "__metadata__") {
      metadata = parseMetadata(header[name]);
      continue;
    }
    checkUnsafeName(name, "safetensors header");
    tensors.push(parseTensorEntry(name, header[name], dataStart, dataLength));
  }

  checkLayout(tensors, dataLength);
  return { metadata, tensors };
}
