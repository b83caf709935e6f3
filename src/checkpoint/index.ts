/** Checkpoint I/O: safetensors reading, validation and writing, shard indexes, config.json and target selection. */
export { BufferByteSource, type ByteSource, FileByteSource } from "./byte-source.ts";
export {
  Checkpoint,
  type CheckpointTensor,
  type NamedSource,
  openCheckpoint,
} from "./checkpoint.ts";
export {
  CONFIG_FILE_NAME,
  MAX_CONFIG_BYTES,
  type ModelConfig,
  modelConfigSchema,
  parseModelConfig,
  readModelConfig,
} from "./config.ts";
export {
  DTYPE_SIZES,
  type Dtype,
  dtypeSize,
  FLOAT_DTYPES,
  type FloatDtype,
  isDtype,
  isFloatDtype,
} from "./dtypes.ts";
export {
  CHECKPOINT_ERRORS,
  CheckpointError,
  type CheckpointErrorCode,
  isCheckpointError,
} from "./errors.ts";
export { assertFinite } from "./finite.ts";
export {
  bf16BytesToFloat32,
  decodeFloat32,
  encodeFloat32,
  f16BytesToFloat32,
  f32BytesToFloat32,
  float32ToBf16Bytes,
  float32ToF16Bytes,
  float32ToF32Bytes,
} from "./float-codec.ts";
export { compileGlobs } from "./glob.ts";
export {
  MAX_HEADER_BYTES,
  MAX_TENSOR_RANK,
  MAX_TENSORS_PER_FILE,
  type TensorInfo,
} from "./header.ts";
export { MAX_SHARD_NAME_LENGTH, MAX_TENSOR_NAME_LENGTH } from "./names.ts";
export { type OpenSafetensorsOptions, openSafetensors, SafetensorsFile } from "./safetensors.ts";
export {
  MAX_INDEX_BYTES,
  MAX_INDEXED_TENSORS,
  parseShardIndex,
  SAFETENSORS_FILE_NAME,
  SAFETENSORS_INDEX_NAME,
  type ShardIndex,
} from "./shard-index.ts";
export {
  DEFAULT_TARGET_PATTERN,
  ineligibilityReason,
  selectTargets,
  type TargetCandidate,
  type TargetOptions,
} from "./targets.ts";
export {
  createSafetensorsWriter,
  type PlannedTensor,
  SafetensorsWriter,
  type SafetensorsWriterOptions,
  type TensorData,
  type WriteResult,
} from "./writer.ts";
