/** LLaMA-family forward pass (Llama, Mistral, Qwen2) over the native BLAS addon, and evaluation. */
export { type AttentionOptions, attentionContext, MAX_SCORE_ELEMENTS } from "./attention.ts";
export {
  attentionInput,
  DECODER_LINEARS,
  type DecoderLayer,
  type DecoderLinearName,
  decoderLayerForward,
  decoderLinearPrefix,
  defaultPositions,
  mlpInput,
  residualAfterAttention,
  residualAfterMlp,
} from "./decoder-layer.ts";
export { MODEL_ERRORS, ModelError, type ModelErrorCode } from "./errors.ts";
export {
  DEFAULT_ACTIVATION_BYTES,
  type EvaluationOptions,
  evaluatePerplexity,
  type PerplexityResult,
} from "./evaluation.ts";
export { greedyDecode } from "./greedy.ts";
export { applyLinear, type Linear, linearShape } from "./linear.ts";
export {
  findTensor,
  type LinearShape,
  type LinearSource,
  loadLinear,
  locateLinear,
  readLinear,
} from "./linear-loading.ts";
export { mlpHidden } from "./mlp.ts";
export {
  embed,
  type ForwardOptions,
  finalLogits,
  finalNorm,
  forwardHidden,
  modelForward,
  tokenLimits,
} from "./model.ts";
export { type OpenedModel, openModel } from "./open.ts";
export { rmsNorm } from "./rmsnorm.ts";
export {
  applyRotary,
  defaultInverseFrequencies,
  inverseFrequencies,
  llama3InverseFrequencies,
  type RotaryTable,
  rotaryTable,
} from "./rope.ts";
export {
  type Architecture,
  type BiasLayout,
  type Llama3RopeScaling,
  type ModelSpec,
  modelSpecFromConfig,
  type SequenceCap,
  SUPPORTED_ARCHITECTURES,
  sequenceCap,
} from "./spec.ts";
export {
  checkModelTensors,
  decoderLinearShapes,
  EMBEDDING_NAME,
  FINAL_NORM_NAME,
  loadDecoderLayer,
  loadEmbedding,
  loadResidentWeights,
  OUTPUT_HEAD_NAME,
  type ResidentWeights,
} from "./weights.ts";
