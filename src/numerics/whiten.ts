/**
 * SVD-LLM whitening: truncate `W L` instead of `W`, where `G = X X^T = L L^T`
 * is the Gram matrix of the layer's calibration inputs. Truncating the
 * whitened weight minimizes `||(W - A B) X||_F` over rank-r pairs.
 */

import { cast, type DType, type Matrix, type Matrix64 } from "../linalg/matrix.ts";
import * as native from "../native/index.ts";
import { NativeError } from "../native/index.ts";
import { type LowRankPair, type SvdRoute, truncatedSvd } from "./truncated-svd.ts";

/** Jitter added below the smallest eigenvalue, relative to the mean eigenvalue `trace(G) / n`. */
export const CHOLESKY_SHIFT = 1e-6;

export interface WhitenedSvdOptions {
  route?: SvdRoute;
  dtype?: DType;
}

export interface CholeskyResult {
  /** Lower triangular `[n, n]` with `G + shift I = L L^T`. */
  l: Matrix64;
  /** Diagonal shift that made `G` positive definite; 0 when none was needed. */
  shift: number;
}

/**
 * Factors the Gram matrix `G` `[n, n]` in float64. When `G` is not positive
 * definite, adds `(eps - lambda_min) I` with `eps = CHOLESKY_SHIFT * trace(G) / n`
 * and factors again.
 */
export async function whiteningFactor(gram: Matrix): Promise<CholeskyResult> {
  const g = cast(gram, "float64");
  try {
    return { l: (await native.cholesky(g)) as Matrix64, shift: 0 };
  } catch (error) {
    if (!(error instanceof NativeError) || error.code !== "NOT_POSITIVE_DEFINITE") throw error;
  }
  const n = g.rows;
  let trace = 0;
  for (let i = 0; i < n; i++) trace += g.data[i * n + i];
  const eps = CHOLESKY_SHIFT * Math.max(Math.abs(trace) / n, Number.MIN_VALUE);
  const { values } = await native.eigh(g);
  const lambdaMin = values[0];
  // Shift so the smallest eigenvalue lands at eps.
  const shift = Math.max(eps - lambdaMin, eps);
  const shifted = new Float64Array(g.data);
  for (let i = 0; i < n; i++) shifted[i * n + i] += shift;
  const l = (await native.cholesky({ rows: n, cols: n, data: shifted })) as Matrix64;
  return { l, shift };
}

/**
 * Whitened truncation: SVD of `W L = U S V^T`, `A = U_r S_r^(1/2)` `[m, r]`,
 * `B = S_r^(1/2) V_r^T L^(-1)` `[r, n]` by a triangular solve.
 */
export async function whitenedSvd(
  w: Matrix,
  gram: Matrix,
  rank: number,
  options: WhitenedSvdOptions = {},
): Promise<LowRankPair & { shift: number }> {
  if (gram.rows !== w.cols || gram.cols !== w.cols) {
    throw new RangeError(
      `Gram matrix [${gram.rows}, ${gram.cols}] does not match the layer's input size ${w.cols}`,
    );
  }
  const dtype = options.dtype ?? (w.data instanceof Float64Array ? "float64" : "float32");
  const { l, shift } = await whiteningFactor(gram);
  const wl = await native.gemm(cast(w, "float64"), l); // [m, n]
  const pair = await truncatedSvd(wl, rank, { route: options.route, dtype: "float64" });
  // Solve B L = S^(1/2) V^T for B [r, n].
  const b = await native.trsm(l, pair.b, { side: "right", lower: true });
  return { a: cast(pair.a, dtype), b: cast(b, dtype), singularValues: pair.singularValues, shift };
}
