/**
 * Causal grouped-query attention over projected queries, keys and values of
 * one sequence: rotary embeddings, then `softmax(Q_h K_h^T / sqrt(d)) V_h`
 * per head, where query head `h` reads key/value head
 * `floor(h / (heads / kvHeads))`.
 */

import type { Matrix32 } from "../linalg/matrix.ts";
import * as native from "../native/index.ts";
import type { DecoderLayer } from "./decoder-layer.ts";
import { TimeSlice } from "./event-loop.ts";
import { applyRotary, inverseFrequencies, rotaryTable } from "./rope.ts";
import type { ModelSpec } from "./spec.ts";

/** Default cap on the attention scores held at once: 2^24 float32 values, 64 MiB. */
export const MAX_SCORE_ELEMENTS = 1 << 24;

export interface AttentionOptions {
  /** Cap on the scores computed per block of query rows (default MAX_SCORE_ELEMENTS). */
  maxScoreElements?: number;
}

/**
 * Copies `count` consecutive heads starting at `first` out of `x`
 * `[T, heads * headDim]` and stacks them head after head, so row
 * `j * T + t` is head `first + j` of token `t`. Returns `[count * T, headDim]`.
 */
function gatherHeads(x: Matrix32, first: number, count: number, headDim: number): Matrix32 {
  const tokens = x.rows;
  const out = new Float32Array(count * tokens * headDim); // [count * T, headDim]
  for (let j = 0; j < count; j++) {
    const column = (first + j) * headDim;
    for (let t = 0; t < tokens; t++) {
      const from = t * x.cols + column;
      out.set(x.data.subarray(from, from + headDim), (j * tokens + t) * headDim);
    }
  }
  return { rows: count * tokens, cols: headDim, data: out };
}

/** Writes stacked heads `[count * T, headDim]` back into `out` `[T, width]` at head `first`. */
function scatterHeads(
  stacked: Matrix32,
  out: Float32Array,
  width: number,
  first: number,
  tokens: number,
): void {
  const headDim = stacked.cols;
  const count = stacked.rows / tokens;
  for (let j = 0; j < count; j++) {
    const column = (first + j) * headDim;
    for (let t = 0; t < tokens; t++) {
      const from = (j * tokens + t) * headDim;
      out.set(stacked.data.subarray(from, from + headDim), t * width + column);
    }
  }
}

/**
 * Turns a block of attention scores `[rows, T]` into causal attention weights
 * in place. The block starts at row `firstRow` of the stacked heads, and row
 * `j * T + t` of the stack keeps columns `0..t`, normalized with a max-subtracted
 * softmax whose sum is accumulated in float64, and columns after `t` become zero.
 */
async function causalSoftmaxInPlace(
  scores: Matrix32,
  firstRow: number,
  tokens: number,
): Promise<void> {
  const slice = new TimeSlice();
  const data = scores.data;
  for (let row = 0; row < scores.rows; row++) {
    const t = (firstRow + row) % tokens;
    const offset = row * tokens;
    let max = Number.NEGATIVE_INFINITY;
    for (let s = 0; s <= t; s++) if (data[offset + s] > max) max = data[offset + s];
    let sum = 0;
    for (let s = 0; s <= t; s++) {
      const weight = Math.exp(data[offset + s] - max);
      data[offset + s] = weight;
      sum += weight;
    }
    const inverseSum = 1 / sum;
    for (let s = 0; s <= t; s++) data[offset + s] *= inverseSum;
    data.fill(0, offset + t + 1, offset + tokens);
    if (slice.due()) await slice.pause();
  }
}

/**
 * Computes the attention context of one sequence: the input of o_proj.
 *
 * `q` `[T, heads * headDim]`, `k` and `v` `[T, kvHeads * headDim]` are the
 * outputs of q_proj, k_proj and v_proj, biases included. `positions` `[T]`
 * are the rotary positions, usually `0..T-1`. Token `t` attends to tokens
 * `0..t` in row order. Returns `[T, heads * headDim]` and leaves the inputs
 * unmodified.
 */
export async function attentionContext(
  layer: DecoderLayer,
  spec: ModelSpec,
  q: Matrix32,
  k: Matrix32,
  v: Matrix32,
  positions: ArrayLike<number>,
  options: AttentionOptions = {},
): Promise<Matrix32> {
  const { numHeads, numKeyValueHeads, headDim } = spec;
  const tokens = q.rows;
  const width = numHeads * headDim;
  const kvWidth = numKeyValueHeads * headDim;
  if (
    q.cols !== width ||
    k.cols !== kvWidth ||
    v.cols !== kvWidth ||
    k.rows !== tokens ||
    v.rows !== tokens ||
    positions.length !== tokens
  ) {
    throw new RangeError(
      `layer ${layer.index} attention: expected q [T, ${width}], k and v [T, ${kvWidth}] and ${tokens} positions, got q [${q.rows}, ${q.cols}], k [${k.rows}, ${k.cols}], v [${v.rows}, ${v.cols}] and ${positions.length} positions`,
    );
  }
  if (spec.slidingWindow !== undefined && tokens > spec.slidingWindow) {
    throw new RangeError(
      `layer ${layer.index} attention: ${tokens} tokens exceed the sliding_window ${spec.slidingWindow}, and this forward pass computes full attention only: split the sequence`,
    );
  }

  const table = rotaryTable(inverseFrequencies(spec), positions);
  const qRotated = applyRotary(q, numHeads, table); // [T, heads * headDim]
  const kRotated = applyRotary(k, numKeyValueHeads, table); // [T, kvHeads * headDim]
  const group = numHeads / numKeyValueHeads;
  const scale = 1 / Math.sqrt(headDim);
  const context = new Float32Array(tokens * width); // [T, heads * headDim]

  // The query heads that share a key/value head are stacked into one
  // `[group * T, headDim]` operand, and its rows are taken in blocks so that
  // one block of scores `[rows, T]` stays within the cap.
  const maxScores = options.maxScoreElements ?? MAX_SCORE_ELEMENTS;
  const blockRows = Math.max(1, Math.floor(maxScores / tokens));
  for (let kvHead = 0; kvHead < numKeyValueHeads; kvHead++) {
    const first = kvHead * group;
    const queries = gatherHeads(qRotated, first, group, headDim); // [group * T, headDim]
    const keys = gatherHeads(kRotated, kvHead, 1, headDim); // [T, headDim]
    const values = gatherHeads(v, kvHead, 1, headDim); // [T, headDim]
    const heads = new Float32Array(queries.data.length); // [group * T, headDim]
    for (let start = 0; start < queries.rows; start += blockRows) {
      const rows = Math.min(blockRows, queries.rows - start);
      const block: Matrix32 = {
        rows,
        cols: headDim,
        data: queries.data.subarray(start * headDim, (start + rows) * headDim),
      }; // [rows, headDim]
      const scores = await native.gemm(block, keys, { transB: true, alpha: scale }); // [rows, T]
      await causalSoftmaxInPlace(scores, start, tokens);
      const blockContext = await native.gemm(scores, values); // [rows, headDim]
      heads.set(blockContext.data, start * headDim);
    }
    scatterHeads({ rows: queries.rows, cols: headDim, data: heads }, context, width, first, tokens);
  }
  return { rows: tokens, cols: width, data: context };
}
