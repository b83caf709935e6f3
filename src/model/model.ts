/**
 * The full causal LM forward pass: token embeddings, decoder layers loaded
 * one at a time, final norm and output head.
 */

import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import type { TokenLimits } from "../data/token-ids.ts";
import { validateTokenSequences } from "../data/token-ids.ts";
import type { Matrix32 } from "../linalg/matrix.ts";
import * as native from "../native/index.ts";
import { decoderLayerForward } from "./decoder-layer.ts";
import { rmsNorm } from "./rmsnorm.ts";
import { type ModelSpec, sequenceCap } from "./spec.ts";
import {
  loadDecoderLayer,
  loadEmbedding,
  loadResidentWeights,
  type ResidentWeights,
} from "./weights.ts";

/** Limits for validating token data against a model; `minLength` 2 for evaluation. */
export function tokenLimits(spec: ModelSpec, minLength = 1): TokenLimits {
  const cap = sequenceCap(spec);
  return {
    vocabSize: spec.vocabSize,
    minLength,
    maxLength: cap.maxLength,
    maxLengthReason: cap.reason,
  };
}

/** Looks up the embedding rows of `tokens`; returns `[T, hidden]`. */
export function embed(embedding: Matrix32, tokens: ArrayLike<number>): Matrix32 {
  const d = embedding.cols;
  const out = new Float32Array(tokens.length * d); // [T, hidden]
  for (let t = 0; t < tokens.length; t++) {
    const id = tokens[t];
    if (!Number.isInteger(id) || id < 0 || id >= embedding.rows) {
      throw new RangeError(
        `token ${t} has id ${id}, outside the vocabulary [0, ${embedding.rows}): validate sequences with validateTokenSequences first`,
      );
    }
    out.set(embedding.data.subarray(id * d, (id + 1) * d), t * d);
  }
  return { rows: tokens.length, cols: d, data: out };
}

/**
 * Applies the final norm to the hidden states `h` `[T, hidden]`, giving the
 * input of the output head.
 */
export function finalNorm(resident: ResidentWeights, h: Matrix32): Promise<Matrix32> {
  return rmsNorm(h, resident.finalNorm, resident.rmsNormEps);
}

/**
 * Computes the logits `[T, vocab]` of the hidden states `h` `[T, hidden]`
 * after the last decoder layer. For long sequences and large vocabularies
 * call `finalNorm` once and multiply row blocks by the head instead, as
 * `evaluatePerplexity` does.
 */
export async function finalLogits(resident: ResidentWeights, h: Matrix32): Promise<Matrix32> {
  const normed = await finalNorm(resident, h); // [T, hidden]
  return native.gemm(normed, resident.outputHead, { transB: true }); // [T, vocab]
}

export interface ForwardOptions {
  /** Resident weights already loaded; without it the embeddings are read from the checkpoint. */
  resident?: ResidentWeights;
  /** Path prefix of error fields, e.g. "calibration" (default "input"). */
  field?: string;
  /** Called after all sequences have passed a decoder layer. */
  onLayer?: (layerIndex: number, layerCount: number) => void | Promise<void>;
}

/**
 * Runs every sequence through all decoder layers and returns the hidden
 * states after the last one, `[T_i, hidden]` per sequence (before the final
 * norm). All sequences pass layer i before layer i + 1 is loaded, so each
 * layer is read once, and memory has one layer and every sequence's hidden
 * states in it. Sequences are validated against the model first.
 */
export async function forwardHidden(
  checkpoint: Checkpoint,
  spec: ModelSpec,
  sequences: readonly ArrayLike<number>[],
  options: ForwardOptions = {},
): Promise<Matrix32[]> {
  validateTokenSequences(sequences, tokenLimits(spec), options.field ?? "input");
  const embedding = options.resident?.embedding ?? (await loadEmbedding(checkpoint, spec));
  let hidden = sequences.map((tokens) => embed(embedding, tokens));
  for (let index = 0; index < spec.numLayers; index++) {
    const layer = await loadDecoderLayer(checkpoint, spec, index);
    const next: Matrix32[] = [];
    for (const h of hidden) next.push(await decoderLayerForward(layer, spec, h));
    hidden = next;
    await options.onLayer?.(index, spec.numLayers);
  }
  return hidden;
}

/** Computes the logits `[T, vocab]` of one sequence. */
export async function modelForward(
  checkpoint: Checkpoint,
  spec: ModelSpec,
  tokens: ArrayLike<number>,
  resident?: ResidentWeights,
): Promise<Matrix32> {
  const weights = resident ?? (await loadResidentWeights(checkpoint, spec));
  const [hidden] = await forwardHidden(checkpoint, spec, [tokens], { resident: weights });
  return finalLogits(weights, hidden);
}
