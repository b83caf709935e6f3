/**
 * Catalogue of checkpoint errors. Every failure of the checkpoint layer is a
 * `CheckpointError` whose `code` is a key below and whose `status` is the HTTP
 * status the service returns for it. The status is 422 for malformed uploaded
 * bytes, 400 for a bad request option, and 500 for a writer used out of
 * contract, which is a bug in the caller rather than in the input.
 */
export const CHECKPOINT_ERRORS = {
  // Safetensors header.
  HEADER_TRUNCATED: {
    status: 422,
    summary: "fewer than 8 bytes, or fewer header bytes than the length prefix declares",
  },
  HEADER_TOO_LARGE: {
    status: 422,
    summary: "header length above the cap or larger than the rest of the file",
  },
  HEADER_NOT_UTF8: { status: 422, summary: "header bytes are not valid UTF-8" },
  HEADER_NOT_JSON: { status: 422, summary: "header text is not valid JSON" },
  HEADER_NOT_OBJECT: { status: 422, summary: "header JSON is not an object" },
  DUPLICATE_KEY: { status: 422, summary: "a JSON object repeats a key" },
  UNSAFE_NAME: {
    status: 422,
    summary: "a name is __proto__, constructor or prototype",
  },
  INVALID_NAME: {
    status: 422,
    summary: "a tensor name is empty, too long, or contains control characters or lone surrogates",
  },
  INVALID_METADATA: { status: 422, summary: "__metadata__ is not an object of strings" },
  TOO_MANY_TENSORS: { status: 422, summary: "more tensors than the cap" },

  // One tensor entry in a header.
  INVALID_TENSOR_ENTRY: { status: 422, summary: "a tensor entry is not a JSON object" },
  UNKNOWN_DTYPE: { status: 422, summary: "dtype missing or not a safetensors dtype" },
  INVALID_SHAPE: {
    status: 422,
    summary: "shape not an array of non-negative integers, or too many dimensions",
  },
  SHAPE_OVERFLOW: {
    status: 422,
    summary: "element count x dtype size exceeds Number.MAX_SAFE_INTEGER bytes",
  },
  INVALID_OFFSETS: {
    status: 422,
    summary: "data_offsets not two non-negative integers with begin <= end",
  },
  SIZE_MISMATCH: { status: 422, summary: "end - begin differs from shape x dtype size" },
  OFFSETS_OUT_OF_BOUNDS: { status: 422, summary: "data_offsets end past the data section" },

  // Layout of the data section.
  OVERLAPPING_TENSORS: { status: 422, summary: "two tensors share bytes" },
  GAP_BETWEEN_TENSORS: { status: 422, summary: "bytes between tensors belong to no tensor" },
  TRAILING_BYTES: { status: 422, summary: "bytes after the last tensor belong to no tensor" },

  // Reading tensor data.
  DATA_TRUNCATED: {
    status: 422,
    summary: "a read returned fewer bytes than the header promised",
  },
  NOT_FLOAT_DTYPE: {
    status: 422,
    summary: "float conversion requested for a dtype other than F32, F16 or BF16",
  },
  NON_FINITE_TENSOR: { status: 422, summary: "a tensor chosen for compression has NaN or Inf" },

  // Sharded checkpoints.
  MISSING_CHECKPOINT: {
    status: 422,
    summary: "neither model.safetensors nor model.safetensors.index.json is present",
  },
  INVALID_INDEX: {
    status: 422,
    summary: "model.safetensors.index.json is not JSON of the expected shape",
  },
  UNSAFE_SHARD_NAME: { status: 422, summary: "a shard name is not a plain file name" },
  DUPLICATE_SHARD: { status: 422, summary: "two sources have the same file name" },
  MISSING_SHARD: { status: 422, summary: "a shard named in the index is absent" },
  TENSOR_NOT_IN_SHARD: {
    status: 422,
    summary: "an indexed tensor is absent from the shard the index names",
  },
  TENSOR_IN_TWO_SHARDS: { status: 422, summary: "a tensor name appears in two shards" },
  UNINDEXED_TENSOR: { status: 422, summary: "a shard contains a tensor the index does not list" },

  // config.json.
  MISSING_CONFIG: { status: 422, summary: "config.json is absent" },
  INVALID_CONFIG: { status: 422, summary: "config.json is not JSON of the expected shape" },

  // Compressed artifacts (checkpoints this service wrote).
  INVALID_ARTIFACT: {
    status: 422,
    summary: "a compressed artifact lacks a factor tensor or has inconsistent factor shapes",
  },

  // Target selection options.
  INVALID_GLOB: { status: 400, summary: "an include or exclude glob is invalid or too long" },
  NO_TARGETS: { status: 400, summary: "no tensor matches the target selection" },

  // Writer used out of contract.
  INVALID_PLAN: { status: 500, summary: "the writer's tensor plan or metadata is invalid" },
  WRITE_OUT_OF_ORDER: { status: 500, summary: "writeTensor called out of plan order" },
  WRITE_SIZE_MISMATCH: {
    status: 500,
    summary: "writeTensor bytes differ from the planned byte length",
  },
  WRITE_DTYPE_MISMATCH: {
    status: 500,
    summary: "writeTensor typed array type does not match the planned dtype",
  },
  WRITER_BUSY: { status: 500, summary: "writeTensor called before the previous write finished" },
  WRITER_CLOSED: { status: 500, summary: "writer used after close, abort or a failed write" },
  WRITE_INCOMPLETE: { status: 500, summary: "close called before every tensor was written" },
} as const satisfies Record<string, { status: number; summary: string }>;

export type CheckpointErrorCode = keyof typeof CHECKPOINT_ERRORS;

/** Error raised by the checkpoint layer, with a stable `code` and an HTTP `status`. */
export class CheckpointError extends Error {
  readonly code: CheckpointErrorCode;
  readonly status: number;

  constructor(code: CheckpointErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CheckpointError";
    this.code = code;
    this.status = CHECKPOINT_ERRORS[code].status;
  }
}

export function isCheckpointError(error: unknown): error is CheckpointError {
  return error instanceof CheckpointError;
}

/** Quotes a name for an error message, cutting very long names so messages stay readable. */
export function quote(name: string, maxLength = 200): string {
  const cut = name.length > maxLength ? `${name.slice(0, maxLength)}...` : name;
  return JSON.stringify(cut);
}

/** JSON text of an untrusted value for an error message, cut so a huge value cannot flood logs. */
export function preview(value: unknown, maxLength = 120): string {
  const json = JSON.stringify(value) ?? String(value);
  return json.length > maxLength ? `${json.slice(0, maxLength)}...` : json;
}
