/** The SwiGLU gate of the LLaMA MLP: `down(silu(gate(x)) * up(x))`. */

import type { Matrix32 } from "../linalg/matrix.ts";
import { TimeSlice } from "./event-loop.ts";

/**
 * Computes `silu(gateOut) * upOut` element by element, the input of
 * down_proj, with `silu(x) = x / (1 + exp(-x))` in float64. Both inputs and
 * the result are `[T, intermediate]`.
 */
export async function mlpHidden(gateOut: Matrix32, upOut: Matrix32): Promise<Matrix32> {
  if (gateOut.rows !== upOut.rows || gateOut.cols !== upOut.cols) {
    throw new RangeError(
      `gate_proj output [${gateOut.rows}, ${gateOut.cols}] and up_proj output [${upOut.rows}, ${upOut.cols}] differ in shape`,
    );
  }
  const width = gateOut.cols;
  const out = new Float32Array(gateOut.data.length); // [T, intermediate]
  const slice = new TimeSlice();
  for (let t = 0; t < gateOut.rows; t++) {
    const offset = t * width;
    for (let j = offset; j < offset + width; j++) {
      const gate = gateOut.data[j];
      out[j] = (gate / (1 + Math.exp(-gate))) * upOut.data[j];
    }
    if (slice.due()) await slice.pause();
  }
  return { rows: gateOut.rows, cols: width, data: out };
}
