/** RMSNorm as in Hugging Face LLaMA: `weight * x / sqrt(mean(x^2) + eps)` per token. */

import type { Matrix32 } from "../linalg/matrix.ts";
import { TimeSlice } from "./event-loop.ts";

/**
 * Normalizes each row of `x` `[T, d]` and scales it by `weight` `[d]`. The
 * mean of squares and the scaling are computed in float64 and rounded to
 * float32 once per element.
 */
export async function rmsNorm(x: Matrix32, weight: Float32Array, eps: number): Promise<Matrix32> {
  const d = x.cols;
  if (weight.length !== d) {
    throw new RangeError(
      `RMSNorm weight has ${weight.length} elements but the input has ${d} columns`,
    );
  }
  const out = new Float32Array(x.data.length); // [T, d]
  const slice = new TimeSlice();
  for (let t = 0; t < x.rows; t++) {
    const offset = t * d;
    let sumOfSquares = 0;
    for (let j = 0; j < d; j++) {
      const value = x.data[offset + j];
      sumOfSquares += value * value;
    }
    const scale = 1 / Math.sqrt(sumOfSquares / d + eps);
    for (let j = 0; j < d; j++) out[offset + j] = weight[j] * (x.data[offset + j] * scale);
    if (slice.due()) await slice.pause();
  }
  return { rows: x.rows, cols: d, data: out };
}
