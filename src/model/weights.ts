/**
 * Loads the model's weights in two parts, so that at most one decoder layer
 * is in memory at a time. The resident weights (token embeddings, final
 * norm, output head) stay loaded for the whole forward pass, and decoder
 * layers are loaded one by one.
 */

import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import type { Matrix32 } from "../linalg/matrix.ts";
import {
  DECODER_LINEARS,
  type DecoderLayer,
  type DecoderLinearName,
  decoderLinearPrefix,
} from "./decoder-layer.ts";
import type { Linear } from "./linear.ts";
import {
  findTensor,
  type LinearShape,
  loadLinear,
  locateLinear,
  locateTensor,
  readMatrix,
  readVector,
} from "./linear-loading.ts";
import type { ModelSpec } from "./spec.ts";

export const EMBEDDING_NAME = "model.embed_tokens.weight";
export const FINAL_NORM_NAME = "model.norm.weight";
export const OUTPUT_HEAD_NAME = "lm_head.weight";

/** Weights kept in memory for the whole forward pass. */
export interface ResidentWeights {
  /** Token embeddings `[vocab, hidden]`. */
  embedding: Matrix32;
  /** Final norm weight `[hidden]`. */
  finalNorm: Float32Array;
  /** Output head `[vocab, hidden]`; the same object as `embedding` when tied. */
  outputHead: Matrix32;
  rmsNormEps: number;
}

/** Loads the token embeddings `[vocab, hidden]`. */
export function loadEmbedding(checkpoint: Checkpoint, spec: ModelSpec): Promise<Matrix32> {
  return readMatrix(
    checkpoint,
    EMBEDDING_NAME,
    spec.vocabSize,
    spec.hiddenSize,
    "token embeddings",
  );
}

/**
 * Loads embeddings, final norm and output head. The head is tied to the
 * embeddings when config.json sets `tie_word_embeddings` or when the
 * checkpoint has no `lm_head.weight`, as transformers does.
 */
export async function loadResidentWeights(
  checkpoint: Checkpoint,
  spec: ModelSpec,
): Promise<ResidentWeights> {
  const { vocabSize, hiddenSize } = spec;
  const embedding = await loadEmbedding(checkpoint, spec);
  const finalNorm = await readVector(checkpoint, FINAL_NORM_NAME, hiddenSize, "final norm");
  const tied = spec.tieWordEmbeddings || findTensor(checkpoint, OUTPUT_HEAD_NAME) === undefined;
  const outputHead = tied
    ? embedding
    : await readMatrix(checkpoint, OUTPUT_HEAD_NAME, vocabSize, hiddenSize, "output head");
  return { embedding, finalNorm, outputHead, rmsNormEps: spec.rmsNormEps };
}

/** Weight shape `[m, n]` of each linear of a decoder layer. */
export function decoderLinearShapes(spec: ModelSpec): Record<DecoderLinearName, LinearShape> {
  const { hiddenSize, intermediateSize, numHeads, numKeyValueHeads, headDim } = spec;
  const queryWidth = numHeads * headDim;
  const keyValueWidth = numKeyValueHeads * headDim;
  return {
    q: { outputs: queryWidth, inputs: hiddenSize },
    k: { outputs: keyValueWidth, inputs: hiddenSize },
    v: { outputs: keyValueWidth, inputs: hiddenSize },
    o: { outputs: hiddenSize, inputs: queryWidth },
    gate: { outputs: intermediateSize, inputs: hiddenSize },
    up: { outputs: intermediateSize, inputs: hiddenSize },
    down: { outputs: hiddenSize, inputs: intermediateSize },
  };
}

function hasBias(spec: ModelSpec, name: DecoderLinearName): boolean {
  if (name === "q" || name === "k" || name === "v") return spec.biases.qkv;
  if (name === "o") return spec.biases.o;
  return spec.biases.mlp;
}

/** Loads decoder layer `index`: its two norms and seven linears, dense or compressed. */
export async function loadDecoderLayer(
  checkpoint: Checkpoint,
  spec: ModelSpec,
  index: number,
): Promise<DecoderLayer> {
  if (!Number.isInteger(index) || index < 0 || index >= spec.numLayers) {
    throw new RangeError(
      `decoder layer index ${index} is out of range: the model has ${spec.numLayers} layers`,
    );
  }
  const prefix = `model.layers.${index}`;
  const inputNorm = await readVector(
    checkpoint,
    `${prefix}.input_layernorm.weight`,
    spec.hiddenSize,
    "input_layernorm",
  );
  const postAttentionNorm = await readVector(
    checkpoint,
    `${prefix}.post_attention_layernorm.weight`,
    spec.hiddenSize,
    "post_attention_layernorm",
  );
  const shapes = decoderLinearShapes(spec);
  const linears = {} as Record<DecoderLinearName, Linear>;
  for (const name of Object.keys(DECODER_LINEARS) as DecoderLinearName[]) {
    linears[name] = await loadLinear(
      checkpoint,
      decoderLinearPrefix(index, name),
      shapes[name],
      hasBias(spec, name),
    );
  }
  return { index, rmsNormEps: spec.rmsNormEps, inputNorm, postAttentionNorm, linears };
}

/**
 * Checks from the headers alone that the checkpoint has every tensor the
 * spec needs, dense or compressed, with matching shapes, so a job fails
 * before any tensor data is read. Raises MISSING_WEIGHT, INVALID_WEIGHT or
 * INVALID_ARTIFACT.
 */
export function checkModelTensors(checkpoint: Checkpoint, spec: ModelSpec): void {
  const { vocabSize, hiddenSize } = spec;
  locateTensor(checkpoint, EMBEDDING_NAME, [vocabSize, hiddenSize], "token embeddings");
  locateTensor(checkpoint, FINAL_NORM_NAME, [hiddenSize], "final norm");
  if (!spec.tieWordEmbeddings && findTensor(checkpoint, OUTPUT_HEAD_NAME) !== undefined) {
    locateTensor(checkpoint, OUTPUT_HEAD_NAME, [vocabSize, hiddenSize], "output head");
  }
  const shapes = decoderLinearShapes(spec);
  for (let index = 0; index < spec.numLayers; index++) {
    for (const norm of ["input_layernorm", "post_attention_layernorm"]) {
      locateTensor(checkpoint, `model.layers.${index}.${norm}.weight`, [hiddenSize], norm);
    }
    for (const name of Object.keys(DECODER_LINEARS) as DecoderLinearName[]) {
      locateLinear(checkpoint, decoderLinearPrefix(index, name), shapes[name], hasBias(spec, name));
    }
  }
}
