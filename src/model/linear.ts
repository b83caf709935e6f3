/**
 * Pluggable linear layers `y = x W^T + b` for activations `x` `[T, n]`, one
 * token per row. W is stored dense, as a low-rank pair `W = A B`, or in PIFA
 * form, so the same forward pass runs an original checkpoint, a compressed
 * artifact, or a layer refit in memory.
 */

import type { Matrix32 } from "../linalg/matrix.ts";
import * as native from "../native/index.ts";
import { lowRankForward, type PifaLayer, pifaForward } from "../numerics/pifa.ts";

export type Linear =
  /** `weight` `[m, n]` as Hugging Face stores `<module>.weight`. */
  | { kind: "dense"; weight: Matrix32; bias?: Float32Array }
  /** `W = a b` with `a` `[m, r]` and `b` `[r, n]`. */
  | { kind: "low-rank"; a: Matrix32; b: Matrix32; bias?: Float32Array }
  | { kind: "pifa"; layer: PifaLayer; bias?: Float32Array };

/** Output size `m` and input size `n` of the weight `[m, n]`. */
export function linearShape(linear: Linear): { outputs: number; inputs: number } {
  switch (linear.kind) {
    case "dense":
      return { outputs: linear.weight.rows, inputs: linear.weight.cols };
    case "low-rank":
      return { outputs: linear.a.rows, inputs: linear.b.cols };
    case "pifa":
      return { outputs: linear.layer.rows, inputs: linear.layer.pivotRows.cols };
  }
}

/** Computes `x W^T (+ b)` for `x` `[T, n]`; returns `[T, m]` in float32. */
export async function applyLinear(linear: Linear, x: Matrix32): Promise<Matrix32> {
  const { outputs, inputs } = linearShape(linear);
  if (x.cols !== inputs) {
    throw new RangeError(
      `linear layer [${outputs}, ${inputs}] cannot take input [${x.rows}, ${x.cols}]: expected ${inputs} columns`,
    );
  }
  let y: Matrix32;
  switch (linear.kind) {
    case "dense":
      y = await native.gemm(x, linear.weight, { transB: true }); // [T, m]
      break;
    case "low-rank":
      y = (await lowRankForward(linear.a, linear.b, x)) as Matrix32; // [T, m]
      break;
    case "pifa":
      y = (await pifaForward(linear.layer, x)) as Matrix32; // [T, m]
      break;
  }
  if (linear.bias !== undefined) addBias(y, linear.bias);
  return y;
}

/** Adds `bias` `[m]` to every row of `y` `[T, m]` in place. */
function addBias(y: Matrix32, bias: Float32Array): void {
  const m = y.cols;
  for (let t = 0; t < y.rows; t++) {
    const offset = t * m;
    for (let j = 0; j < m; j++) y.data[offset + j] += bias[j];
  }
}
