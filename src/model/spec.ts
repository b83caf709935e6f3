/**
 * The model spec: the validated subset of `config.json` that the LLaMA-family
 * forward pass uses, with the defaults of the matching Hugging Face config
 * classes (transformers `LlamaConfig`, `MistralConfig`, `Qwen2Config`) filled
 * in.
 */

import type { ModelConfig } from "../checkpoint/config.ts";
import { ModelError } from "./errors.ts";

export const SUPPORTED_ARCHITECTURES = [
  "LlamaForCausalLM",
  "MistralForCausalLM",
  "Qwen2ForCausalLM",
] as const;

export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

/** Architecture implied by `model_type` when `architectures` is absent. */
const ARCHITECTURE_BY_MODEL_TYPE: Record<string, Architecture> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
};

/** `rope_scaling` of type `llama3` (Llama 3.1 and later), in config.json's units. */
export interface Llama3RopeScaling {
  type: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/** Which linear modules carry a `.bias` tensor. */
export interface BiasLayout {
  /** q_proj, k_proj and v_proj. */
  qkv: boolean;
  o: boolean;
  /** gate_proj, up_proj and down_proj. */
  mlp: boolean;
}

export interface ModelSpec {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Undefined for the default (unscaled) rotary embedding. */
  ropeScaling: Llama3RopeScaling | undefined;
  /** `max_position_embeddings`: maximum sequence length the model was built for, when set. */
  maxPositionEmbeddings: number | undefined;
  /** Attention window of a sliding-window model; undefined when attention is full. */
  slidingWindow: number | undefined;
  /**
   * config.json's `tie_word_embeddings`. A checkpoint without `lm_head.weight`
   * is tied regardless.
   */
  tieWordEmbeddings: boolean;
  biases: BiasLayout;
}

/** Defaults shared by the three config classes in transformers 4.x. */
const DEFAULT_RMS_NORM_EPS = 1e-6;
const DEFAULT_ROPE_THETA = 10_000;
/** `MistralConfig.sliding_window` and `Qwen2Config.sliding_window` default. */
const DEFAULT_SLIDING_WINDOW = 4096;
const SILU_ACTIVATIONS = new Set(["silu", "swish"]);

function architectureOf(config: ModelConfig): Architecture {
  const supported = SUPPORTED_ARCHITECTURES.join(", ");
  const named = config.architectures?.[0];
  if (named !== undefined) {
    if ((SUPPORTED_ARCHITECTURES as readonly string[]).includes(named)) {
      return named as Architecture;
    }
    throw new ModelError(
      "UNSUPPORTED_ARCHITECTURE",
      `architecture ${JSON.stringify(named)} is not supported: the forward pass implements ${supported}`,
      "architectures",
    );
  }
  if (config.model_type !== undefined) {
    const implied = ARCHITECTURE_BY_MODEL_TYPE[config.model_type];
    if (implied !== undefined) return implied;
    throw new ModelError(
      "UNSUPPORTED_ARCHITECTURE",
      `model_type ${JSON.stringify(config.model_type)} is not supported: the forward pass implements ${supported}`,
      "model_type",
    );
  }
  throw new ModelError(
    "INVALID_MODEL_CONFIG",
    `config.json sets neither architectures nor model_type: add "architectures": ["LlamaForCausalLM"] or another of ${supported}`,
    "architectures",
  );
}

function requireField(config: ModelConfig, key: keyof ModelConfig): number {
  const value = config[key];
  if (typeof value !== "number") {
    throw new ModelError(
      "INVALID_MODEL_CONFIG",
      `config.json has no ${String(key)}: the forward pass needs it, so upload the config.json saved with the model`,
      String(key),
    );
  }
  return value;
}

function positiveNumberIn(scaling: Record<string, unknown>, key: string, integer: boolean): number {
  const value = scaling[key];
  const valid =
    typeof value === "number" &&
    Number.isFinite(value) &&
    value > 0 &&
    (!integer || Number.isInteger(value));
  if (!valid) {
    throw new ModelError(
      "INVALID_MODEL_CONFIG",
      `rope_scaling of type llama3 needs ${key} as a positive ${integer ? "integer" : "number"}, got ${JSON.stringify(value)}`,
      `rope_scaling.${key}`,
    );
  }
  return value as number;
}

/** Reads `rope_scaling`; only the default and `llama3` types are implemented. */
function ropeScalingOf(config: ModelConfig): Llama3RopeScaling | undefined {
  const scaling = config.rope_scaling;
  if (scaling == null) return undefined;
  // transformers reads `rope_type` and falls back to the older key `type`.
  const type = scaling.rope_type ?? scaling.type ?? "default";
  if (type === "default") return undefined;
  if (type !== "llama3") {
    throw new ModelError(
      "UNSUPPORTED_MODEL_CONFIG",
      `rope_scaling type ${JSON.stringify(type)} is not supported: the forward pass implements the default rotary embedding and type "llama3"`,
      "rope_scaling",
    );
  }
  const fields = scaling as Record<string, unknown>;
  const result: Llama3RopeScaling = {
    type: "llama3",
    factor: positiveNumberIn(fields, "factor", false),
    lowFreqFactor: positiveNumberIn(fields, "low_freq_factor", false),
    highFreqFactor: positiveNumberIn(fields, "high_freq_factor", false),
    originalMaxPositionEmbeddings: positiveNumberIn(
      fields,
      "original_max_position_embeddings",
      true,
    ),
  };
  if (result.highFreqFactor <= result.lowFreqFactor) {
    throw new ModelError(
      "INVALID_MODEL_CONFIG",
      `rope_scaling high_freq_factor ${result.highFreqFactor} must be greater than low_freq_factor ${result.lowFreqFactor}`,
      "rope_scaling.high_freq_factor",
    );
  }
  return result;
}

/**
 * Window of the sliding-window attention that applies, or undefined. Mistral
 * uses `sliding_window` (default 4096, null disables it). Qwen2 uses it only
 * when `use_sliding_window` is true.
 */
function slidingWindowOf(architecture: Architecture, config: ModelConfig): number | undefined {
  const usesWindow =
    architecture === "MistralForCausalLM" ||
    (architecture === "Qwen2ForCausalLM" && config.use_sliding_window === true);
  // NOTE: transformers versions disagree on which Qwen2 layers (below or from
  // max_window_layers) use the window, so the window caps the whole model.
  // That can only reject more sequences, never compute a different result.
  if (!usesWindow || config.sliding_window === null) return undefined;
  const window = config.sliding_window ?? DEFAULT_SLIDING_WINDOW;
  if (window < 1) {
    throw new ModelError(
      "INVALID_MODEL_CONFIG",
      `sliding_window ${window} is invalid: set a positive window, or null for full attention`,
      "sliding_window",
    );
  }
  return window;
}

function biasLayoutOf(architecture: Architecture, config: ModelConfig): BiasLayout {
  if (architecture === "Qwen2ForCausalLM") return { qkv: true, o: false, mlp: false };
  if (architecture === "MistralForCausalLM") return { qkv: false, o: false, mlp: false };
  const attention = config.attention_bias === true;
  return { qkv: attention, o: attention, mlp: config.mlp_bias === true };
}

/**
 * Builds the spec from a parsed config.json. Raises UNSUPPORTED_ARCHITECTURE
 * for other architectures, UNSUPPORTED_MODEL_CONFIG for rope scaling types
 * other than llama3 and activations other than SiLU, and INVALID_MODEL_CONFIG
 * when a size field is missing.
 */
export function modelSpecFromConfig(config: ModelConfig): ModelSpec {
  const architecture = architectureOf(config);
  const hiddenSize = requireField(config, "hidden_size");
  const numHeads = requireField(config, "num_attention_heads");
  const numKeyValueHeads = config.num_key_value_heads ?? numHeads;
  const headDim = config.head_dim ?? hiddenSize / numHeads;
  if (!Number.isInteger(headDim)) {
    throw new ModelError(
      "INVALID_MODEL_CONFIG",
      `hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}: set head_dim`,
      "head_dim",
    );
  }
  if (headDim % 2 !== 0) {
    throw new ModelError(
      "INVALID_MODEL_CONFIG",
      `head_dim ${headDim} is odd, but rotary embeddings rotate pairs of dimensions`,
      "head_dim",
    );
  }
  if (numHeads % numKeyValueHeads !== 0) {
    throw new ModelError(
      "INVALID_MODEL_CONFIG",
      `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKeyValueHeads}`,
      "num_key_value_heads",
    );
  }

  const activation = typeof config.hidden_act === "string" ? config.hidden_act : "silu";
  if (!SILU_ACTIVATIONS.has(activation)) {
    throw new ModelError(
      "UNSUPPORTED_MODEL_CONFIG",
      `hidden_act ${JSON.stringify(activation)} is not supported: the MLP implements SwiGLU with silu`,
      "hidden_act",
    );
  }

  return {
    architecture,
    hiddenSize,
    intermediateSize: requireField(config, "intermediate_size"),
    numLayers: requireField(config, "num_hidden_layers"),
    numHeads,
    numKeyValueHeads,
    headDim,
    vocabSize: requireField(config, "vocab_size"),
    rmsNormEps: config.rms_norm_eps ?? DEFAULT_RMS_NORM_EPS,
    ropeTheta: config.rope_theta ?? DEFAULT_ROPE_THETA,
    ropeScaling: ropeScalingOf(config),
    maxPositionEmbeddings: config.max_position_embeddings,
    slidingWindow: slidingWindowOf(architecture, config),
    tieWordEmbeddings: config.tie_word_embeddings === true,
    biases: biasLayoutOf(architecture, config),
  };
}

/** Maximum sequence length the forward pass accepts, and the config field that sets it. */
export interface SequenceCap {
  maxLength: number | undefined;
  /** e.g. "max_position_embeddings 512" or "the sliding_window 4096 of MistralForCausalLM". */
  reason: string | undefined;
}

/**
 * Returns the cap on sequence length: `max_position_embeddings` when set, and the
 * sliding window, because this forward pass computes full causal attention,
 * which equals windowed attention only for sequences within the window.
 */
export function sequenceCap(spec: ModelSpec): SequenceCap {
  const window = spec.slidingWindow;
  const positions = spec.maxPositionEmbeddings;
  if (window !== undefined && (positions === undefined || window < positions)) {
    return {
      maxLength: window,
      reason: `the sliding_window ${window} of ${spec.architecture} (this forward pass computes full attention only)`,
    };
  }
  if (positions !== undefined) {
    return { maxLength: positions, reason: `max_position_embeddings ${positions}` };
  }
  return { maxLength: undefined, reason: undefined };
}
