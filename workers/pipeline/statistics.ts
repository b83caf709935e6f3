/**
 * Calibration statistics of one group of linears that share an input:
 * the whitening Gram `G = X X^T` over the dense stream and, for M, `H = X_hat
 * X_hat^T` over the compressed stream and `C = Y X_hat^T` per linear with
 * `Y = (1 - lambda) W X_hat + lambda W X`. Activations arrive one sequence at
 * a time as `[T, n]` rows, so `X X^T` in column convention is `X_s^T X_s`.
 * Everything accumulates in float64; nothing larger than `[m, n]` is kept.
 */

import { cast, type Matrix, type Matrix32, type Matrix64 } from "../../src/linalg/matrix.ts";
import * as native from "../../src/native/index.ts";

export interface GroupStatistics {
  /** `[n, n]` over the dense stream. */
  gram: Matrix64;
  /** `[n, n]` over the compressed stream; only with M. */
  h?: Matrix64;
  /** `[m, n]` per linear name; only with M. */
  c: Map<string, Matrix64>;
  tokens: number;
}

export interface StatisticsOptions {
  /** Accumulate `H` and `C` for the M refit. */
  refit: boolean;
  lambda: number;
}

function zeros64(rows: number, cols: number): Matrix64 {
  return { rows, cols, data: new Float64Array(rows * cols) };
}

/**
 * Accumulates the statistics of the linears `weights` (name -> `W [m, n]`)
 * over per-sequence dense inputs `dense[s]` and compressed inputs
 * `compressed[s]`, both `[T_s, n]`.
 */
export async function accumulateStatistics(
  weights: ReadonlyMap<string, Matrix32>,
  dense: readonly Matrix32[],
  compressed: readonly Matrix32[],
  options: StatisticsOptions,
): Promise<GroupStatistics> {
  const n = dense[0].cols;
  let gram = zeros64(n, n);
  let h = options.refit ? zeros64(n, n) : undefined;
  const c = new Map<string, Matrix64>();
  const weights64 = new Map<string, Matrix64>();
  if (options.refit) {
    for (const [name, w] of weights) {
      c.set(name, zeros64(w.rows, n));
      weights64.set(name, cast(w, "float64"));
    }
  }

  let tokens = 0;
  for (let s = 0; s < dense.length; s++) {
    const x = cast(dense[s], "float64"); // [T, n]
    tokens += x.rows;
    gram = (await native.syrk(x, { trans: true, c: gram })) as Matrix64;
    if (!options.refit || h === undefined) continue;

    const xHat = cast(compressed[s], "float64"); // [T, n]
    h = (await native.syrk(xHat, { trans: true, c: h })) as Matrix64;
    for (const [name, w] of weights64) {
      // Y^T = (1 - lambda) X_hat^T W^T + lambda X^T W^T, here as rows: [T, m]
      const yHat = await native.gemm(xHat, w, { transB: true, alpha: 1 - options.lambda });
      const y = await native.gemm(x, w, { transB: true, alpha: options.lambda, c: yHat });
      // C += Y X_hat^T, i.e. y^T xHat: [m, n]
      const accumulated = c.get(name) as Matrix64;
      c.set(name, (await native.gemm(y, xHat, { transA: true, c: accumulated })) as Matrix64);
    }
  }
  return { gram, h, c, tokens };
}

/** Views a refit pair as the statistics the M steps take. */
export function mStatistics(statistics: GroupStatistics, name: string, w: Matrix) {
  const c = statistics.c.get(name);
  if (statistics.h === undefined || c === undefined) {
    throw new Error(`no M statistics were accumulated for ${name}`);
  }
  return { h: statistics.h, c, w };
}
