/**
 * Perplexity on held-out token sequences: the mean negative log-likelihood
 * of every next token under the model's logits, with the log-softmax in
 * float64, and its exponential.
 */

import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import { validateTokenSequences } from "../data/token-ids.ts";
import type { Matrix32 } from "../linalg/matrix.ts";
import * as native from "../native/index.ts";
import { TimeSlice } from "./event-loop.ts";
import { finalNorm, forwardHidden, tokenLimits } from "./model.ts";
import type { ModelSpec } from "./spec.ts";
import { loadResidentWeights, type ResidentWeights } from "./weights.ts";

/** Cap on the logits held at once while scoring, in elements: 64 MiB of float32. */
const MAX_LOGIT_BLOCK_ELEMENTS = 1 << 24;

/**
 * Default budget for the hidden states of the sequences that pass the
 * decoder layers together. Sequences beyond it start another pass over the
 * layers, which reads every layer again.
 */
export const DEFAULT_ACTIVATION_BYTES = 1 << 30;

export interface PerplexityResult {
  /** Mean negative log-likelihood per predicted token, in nats. */
  meanNll: number;
  perplexity: number;
  /** Predicted tokens: the sum of `length - 1` over the sequences. */
  tokens: number;
  sequences: number;
}

export interface EvaluationOptions {
  /** Path prefix of error fields; default "evaluation". */
  field?: string;
  /** Budget in bytes for the hidden states of one pass over the layers. */
  activationBytes?: number;
  /** Called after each pass has taken all its sequences through a decoder layer. */
  onLayer?: (layerIndex: number, layerCount: number) => void | Promise<void>;
}

/**
 * Sums `-log softmax(logits[t])[tokens[t + 1]]` over the rows of `normed`
 * `[T, hidden]` that have a next token, computing logits in row blocks.
 */
async function sequenceNll(
  resident: ResidentWeights,
  normed: Matrix32,
  tokens: ArrayLike<number>,
): Promise<number> {
  const head = resident.outputHead; // [vocab, hidden]
  const vocab = head.rows;
  const hidden = normed.cols;
  const predicted = tokens.length - 1;
  const blockRows = Math.max(1, Math.floor(MAX_LOGIT_BLOCK_ELEMENTS / vocab));
  const slice = new TimeSlice();
  let total = 0;
  for (let start = 0; start < predicted; start += blockRows) {
    const rows = Math.min(blockRows, predicted - start);
    const block: Matrix32 = {
      rows,
      cols: hidden,
      data: normed.data.subarray(start * hidden, (start + rows) * hidden),
    }; // [rows, hidden]
    const logits = await native.gemm(block, head, { transB: true }); // [rows, vocab]
    for (let r = 0; r < rows; r++) {
      const offset = r * vocab;
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < vocab; j++)
        if (logits.data[offset + j] > max) max = logits.data[offset + j];
      let sum = 0;
      for (let j = 0; j < vocab; j++) sum += Math.exp(logits.data[offset + j] - max);
      const target = tokens[start + r + 1];
      total += max + Math.log(sum) - logits.data[offset + target];
      if (slice.due()) await slice.pause();
    }
  }
  return total;
}

/** Splits sequence indices into consecutive batches whose hidden states fit the budget. */
function batchesWithin(
  sequences: readonly ArrayLike<number>[],
  hiddenSize: number,
  budgetBytes: number,
): number[][] {
  const batches: number[][] = [];
  let current: number[] = [];
  let bytes = 0;
  for (let i = 0; i < sequences.length; i++) {
    const size = sequences[i].length * hiddenSize * Float32Array.BYTES_PER_ELEMENT;
    if (current.length > 0 && bytes + size > budgetBytes) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(i);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/**
 * Evaluates the model on `sequences` (each of at least 2 tokens) and
 * returns the mean negative log-likelihood per predicted token and the
 * perplexity. Works on an original checkpoint and on a compressed artifact
 * alike, because linears load from either layout.
 */
export async function evaluatePerplexity(
  checkpoint: Checkpoint,
  spec: ModelSpec,
  sequences: readonly ArrayLike<number>[],
  options: EvaluationOptions = {},
): Promise<PerplexityResult> {
  const field = options.field ?? "evaluation";
  validateTokenSequences(sequences, tokenLimits(spec, 2), field);
  const resident = await loadResidentWeights(checkpoint, spec);
  const batches = batchesWithin(
    sequences,
    spec.hiddenSize,
    options.activationBytes ?? DEFAULT_ACTIVATION_BYTES,
  );

  let totalNll = 0;
  let predicted = 0;
  for (const batch of batches) {
    const batchSequences = batch.map((i) => sequences[i]);
    const hidden = await forwardHidden(checkpoint, spec, batchSequences, {
      resident,
      field,
      onLayer: options.onLayer,
    });
    for (let k = 0; k < batch.length; k++) {
      const normed = await finalNorm(resident, hidden[k]); // [T, hidden]
      totalNll += await sequenceNll(resident, normed, batchSequences[k]);
      predicted += batchSequences[k].length - 1;
    }
  }
  const meanNll = totalNll / predicted;
  return { meanNll, perplexity: Math.exp(meanNll), tokens: predicted, sequences: sequences.length };
}
