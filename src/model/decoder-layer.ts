/**
 * One LLaMA decoder layer, exposed step by step so that a caller can capture
 * the input of each group of linears ({q, k, v}, {o}, {gate, up}, {down}) and
 * substitute other linears between groups:
 *
 *     x   = attentionInput(layer, h)                       // input of q, k, v
 *     ctx = attentionContext(layer, spec, q(x), k(x), v(x), positions)  // input of o
 *     h2  = residualAfterAttention(h, o(ctx))
 *     x2  = mlpInput(layer, h2)                            // input of gate, up
 *     z   = mlpHidden(gate(x2), up(x2))                    // input of down
 *     h3  = residualAfterMlp(h2, down(z))
 *
 * Activations are `[T, hidden]` float32, one token per row, one sequence at a
 * time.
 */

import type { Matrix32 } from "../linalg/matrix.ts";
import { attentionContext } from "./attention.ts";
import { applyLinear, type Linear } from "./linear.ts";
import { mlpHidden } from "./mlp.ts";
import { rmsNorm } from "./rmsnorm.ts";
import type { ModelSpec } from "./spec.ts";

/** Module path of each linear inside `model.layers.N.`, as Hugging Face names it. */
export const DECODER_LINEARS = {
  q: "self_attn.q_proj",
  k: "self_attn.k_proj",
  v: "self_attn.v_proj",
  o: "self_attn.o_proj",
  gate: "mlp.gate_proj",
  up: "mlp.up_proj",
  down: "mlp.down_proj",
} as const;

export type DecoderLinearName = keyof typeof DECODER_LINEARS;

/** Weights of one decoder layer, loaded by `loadDecoderLayer`. */
export interface DecoderLayer {
  index: number;
  rmsNormEps: number;
  /** input_layernorm weight `[hidden]`. */
  inputNorm: Float32Array;
  /** post_attention_layernorm weight `[hidden]`. */
  postAttentionNorm: Float32Array;
  linears: Record<DecoderLinearName, Linear>;
}

/** Returns `model.layers.{index}.{module}`, the tensor-name prefix of a layer's linear. */
export function decoderLinearPrefix(index: number, name: DecoderLinearName): string {
  return `model.layers.${index}.${DECODER_LINEARS[name]}`;
}

/** input_layernorm of `h` `[T, hidden]`: the input of q_proj, k_proj and v_proj. */
export function attentionInput(layer: DecoderLayer, h: Matrix32): Promise<Matrix32> {
  return rmsNorm(h, layer.inputNorm, layer.rmsNormEps);
}

/** post_attention_layernorm of `h2` `[T, hidden]`: the input of gate_proj and up_proj. */
export function mlpInput(layer: DecoderLayer, h2: Matrix32): Promise<Matrix32> {
  return rmsNorm(h2, layer.postAttentionNorm, layer.rmsNormEps);
}

function addResidual(residual: Matrix32, update: Matrix32, step: string): Matrix32 {
  if (residual.rows !== update.rows || residual.cols !== update.cols) {
    throw new RangeError(
      `${step}: residual [${residual.rows}, ${residual.cols}] and update [${update.rows}, ${update.cols}] differ in shape`,
    );
  }
  const out = new Float32Array(residual.data.length); // [T, hidden]
  for (let i = 0; i < out.length; i++) out[i] = residual.data[i] + update.data[i];
  return { rows: residual.rows, cols: residual.cols, data: out };
}

/** `h + oOut`, both `[T, hidden]`: the hidden state after the attention block. */
export function residualAfterAttention(h: Matrix32, oOut: Matrix32): Matrix32 {
  return addResidual(h, oOut, "residual after attention");
}

/** `h2 + downOut`, both `[T, hidden]`: the layer's output. */
export function residualAfterMlp(h2: Matrix32, downOut: Matrix32): Matrix32 {
  return addResidual(h2, downOut, "residual after MLP");
}

/** Rotary positions `0..T-1` of a sequence of `T` tokens. */
export function defaultPositions(tokens: number): Int32Array {
  const positions = new Int32Array(tokens);
  for (let t = 0; t < tokens; t++) positions[t] = t;
  return positions;
}

/** Runs the whole layer on `h` `[T, hidden]` with its own linears; returns `[T, hidden]`. */
export async function decoderLayerForward(
  layer: DecoderLayer,
  spec: ModelSpec,
  h: Matrix32,
  positions: ArrayLike<number> = defaultPositions(h.rows),
): Promise<Matrix32> {
  const { linears } = layer;
  const x = await attentionInput(layer, h); // [T, hidden]
  const q = await applyLinear(linears.q, x); // [T, heads * headDim]
  const k = await applyLinear(linears.k, x); // [T, kvHeads * headDim]
  const v = await applyLinear(linears.v, x); // [T, kvHeads * headDim]
  const context = await attentionContext(layer, spec, q, k, v, positions);
  const h2 = residualAfterAttention(h, await applyLinear(linears.o, context));

  const x2 = await mlpInput(layer, h2); // [T, hidden]
  const gate = await applyLinear(linears.gate, x2); // [T, intermediate]
  const up = await applyLinear(linears.up, x2); // [T, intermediate]
  const z = await mlpHidden(gate, up);
  return residualAfterMlp(h2, await applyLinear(linears.down, z));
}
