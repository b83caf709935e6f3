/**
 * Truncated SVD as a factor pair: `W [m, n] ~ A B` with `A = U_r S_r^(1/2)`
 * `[m, r]` and `B = S_r^(1/2) V_r^T` `[r, n]`, the best rank-r approximation
 * in Frobenius norm (Eckart–Young).
 */

import { cast, type DType, type Matrix, type Matrix64, transpose } from "../linalg/matrix.ts";
import * as native from "../native/index.ts";

export interface LowRankPair {
  /** `[m, r]` */
  a: Matrix;
  /** `[r, n]` */
  b: Matrix;
  /** All singular values the route computed, descending (at least the first r). */
  singularValues: Float64Array;
}

/**
 * `gram`: eigendecomposition of the smaller Gram matrix in float64 (it squares
 * the condition number, which float64 absorbs for the leading vectors).
 * `gesdd`: divide-and-conquer SVD in the input's precision.
 */
export type SvdRoute = "gram" | "gesdd";

export interface TruncatedSvdOptions {
  route?: SvdRoute;
  /** Element type of the returned factors; defaults to the input's. */
  dtype?: DType;
}

/** Returns the rank-`rank` factor pair of `w` `[m, n]`. */
export async function truncatedSvd(
  w: Matrix,
  rank: number,
  options: TruncatedSvdOptions = {},
): Promise<LowRankPair> {
  const maxRank = Math.min(w.rows, w.cols);
  if (!Number.isSafeInteger(rank) || rank < 1 || rank > maxRank) {
    throw new RangeError(
      `invalid rank ${rank} for a [${w.rows}, ${w.cols}] matrix: expected 1..${maxRank}`,
    );
  }
  const dtype = options.dtype ?? (w.data instanceof Float64Array ? "float64" : "float32");
  const route = options.route ?? "gram";
  const pair = route === "gram" ? await viaGram(w, rank) : await viaGesdd(w, rank);
  return { a: cast(pair.a, dtype), b: cast(pair.b, dtype), singularValues: pair.singularValues };
}

async function viaGesdd(w: Matrix, rank: number): Promise<LowRankPair> {
  const { u, s, vt } = await native.svd(w);
  const k = s.length;
  const m = w.rows;
  const n = w.cols;
  const Ctor = w.data instanceof Float64Array ? Float64Array : Float32Array;
  const a = new Ctor(m * rank); // [m, r]
  const b = new Ctor(rank * n); // [r, n]
  const roots = new Float64Array(rank);
  for (let j = 0; j < rank; j++) roots[j] = Math.sqrt(s[j]);
  for (let i = 0; i < m; i++) {
    const row = i * k;
    for (let j = 0; j < rank; j++) a[i * rank + j] = u.data[row + j] * roots[j];
  }
  for (let j = 0; j < rank; j++) {
    const scale = roots[j];
    for (let c = 0; c < n; c++) b[j * n + c] = vt.data[j * n + c] * scale;
  }
  return {
    a: { rows: m, cols: rank, data: a },
    b: { rows: rank, cols: n, data: b },
    singularValues: Float64Array.from(s),
  };
}

/**
 * For `m >= n`: `W^T W = V S^2 V^T` `[n, n]`, `B = S^(1/2) V^T`,
 * `A = W V S^(-1/2)`. For `m < n` the same on `W W^T = U S^2 U^T` `[m, m]`.
 * Directions with a zero singular value get zero factors.
 */
async function viaGram(w: Matrix, rank: number): Promise<LowRankPair> {
  const w64 = cast(w, "float64");
  const tall = w.rows >= w.cols;
  // tall: W^T W [n, n]; wide: W W^T [m, m]
  const gram = await native.syrk(w64, { trans: tall });
  const { values, vectors } = await native.eigh(gram);
  const size = gram.rows;

  // Eigenvalues come ascending: the top `rank` sit at the end.
  const singularValues = new Float64Array(size);
  for (let j = 0; j < size; j++) singularValues[j] = Math.sqrt(Math.max(0, values[size - 1 - j]));

  // top [size, r]: the leading eigenvectors scaled by S^(1/2) and S^(-1/2).
  const grow = new Float64Array(size * rank); // columns * s^(1/2)
  const shrink = new Float64Array(size * rank); // columns * s^(-1/2)
  for (let j = 0; j < rank; j++) {
    const sigma = singularValues[j];
    const up = Math.sqrt(sigma);
    const down = sigma > 0 ? 1 / up : 0;
    const col = size - 1 - j;
    for (let i = 0; i < size; i++) {
      const v = vectors.data[i * size + col];
      grow[i * rank + j] = v * up;
      shrink[i * rank + j] = v * down;
    }
  }
  const growM: Matrix64 = { rows: size, cols: rank, data: grow };
  const shrinkM: Matrix64 = { rows: size, cols: rank, data: shrink };

  if (tall) {
    // B = (V S^(1/2))^T [r, n]; A = W (V S^(-1/2)) [m, r]
    const a = await native.gemm(w64, shrinkM);
    const b = transpose(growM);
    return { a, b, singularValues };
  }
  // A = U S^(1/2) [m, r]; B = (U S^(-1/2))^T W [r, n]
  const b = await native.gemm(shrinkM, w64, { transA: true });
  return { a: growM, b, singularValues };
}

/** Eckart–Young optimum: `sqrt(sum_{i > r} s_i^2)`. */
export function truncationError(singularValues: ArrayLike<number>, rank: number): number {
  let sum = 0;
  for (let i = rank; i < singularValues.length; i++) sum += singularValues[i] ** 2;
  return Math.sqrt(sum);
}
