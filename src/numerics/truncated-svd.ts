/**
 * Truncated SVD as a factor pair: `W [m, n] ~ A B` with `A = U_r S_r^(1/2)`
 * `[m, r]` and `B = S_r^(1/2) V_r^T` `[r, n]`, the best rank-r approximation
 * in Frobenius norm (Eckart–Young).
 */

import {
  cast,
  type DType,
  type FloatArray,
  type Matrix,
  type Matrix64,
  transpose,
} from "../linalg/matrix.ts";
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

/**
 * Returns the rank-`rank` factor pair of `w` `[m, n]`. `w` is read in place
 * until the promise settles, so keep it unchanged until then.
 */
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
  const pair = route === "gram" ? await viaGram(w, rank, dtype) : await viaGesdd(w, rank);
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
 *
 * Memory: besides the float32 W, each step keeps only what it needs. The
 * Gram product widens W inside the addon, and the product with W afterwards
 * widens one panel of W at a time, so no float64 copy of W is alive during
 * the eigendecomposition. The product with W is written in `dtype` directly,
 * so a float32 result never has a float64 copy of that factor alongside it.
 */
async function viaGram(w: Matrix, rank: number, dtype: DType): Promise<LowRankPair> {
  const tall = w.rows >= w.cols;
  const gram = await gramOf(w, tall);
  const { singularValues, grow, shrink } = await leadingEigenvectors(gram, rank);

  if (tall) {
    // B = (V S^(1/2))^T [r, n]; A = W (V S^(-1/2)) [m, r]
    const a = await multiplyRowPanels(w, shrink, dtype);
    const b = transpose(grow);
    return { a, b, singularValues };
  }
  // A = U S^(1/2) [m, r]; B = (U S^(-1/2))^T W [r, n]
  const b = await multiplyColumnPanels(shrink, w, dtype);
  return { a: grow, b, singularValues };
}

function allocate(length: number, dtype: DType): FloatArray {
  return dtype === "float64" ? new Float64Array(length) : new Float32Array(length);
}

/** Returns the float64 Gram matrix, `W^T W` `[n, n]` when `tall`, else `W W^T` `[m, m]`. */
function gramOf(w: Matrix, tall: boolean): Promise<Matrix64> {
  // The addon widens a float32 W itself and frees that copy before the
  // promise settles. A float64 copy made here would stay in memory through
  // the eigendecomposition, until V8 next collects garbage.
  return native.syrk(w, { trans: tall, dtype: "float64" });
}

/**
 * Eigendecomposes `gram` `[k, k]` and returns all k singular values,
 * descending, and the leading `rank` eigenvectors scaled by `S^(1/2)` (grow)
 * and `S^(-1/2)` (shrink), each `[k, r]`.
 */
async function leadingEigenvectors(
  gram: Matrix64,
  rank: number,
): Promise<{ singularValues: Float64Array; grow: Matrix64; shrink: Matrix64 }> {
  const { values, vectors } = await native.eigh(gram);
  const size = gram.rows;

  // Eigenvalues come ascending: the top `rank` sit at the end.
  const singularValues = new Float64Array(size);
  for (let j = 0; j < size; j++) singularValues[j] = Math.sqrt(Math.max(0, values[size - 1 - j]));

  const up = new Float64Array(rank); // s^(1/2)
  const down = new Float64Array(rank); // s^(-1/2), 0 for s = 0
  for (let j = 0; j < rank; j++) {
    up[j] = Math.sqrt(singularValues[j]);
    down[j] = singularValues[j] > 0 ? 1 / up[j] : 0;
  }
  const grow = new Float64Array(size * rank); // [k, r], columns * s^(1/2)
  const shrink = new Float64Array(size * rank); // [k, r], columns * s^(-1/2)
  // Row by row, so `vectors` is read sequentially: column size - 1 - j of
  // each row contains the entry of the j-th largest eigenvalue.
  for (let i = 0; i < size; i++) {
    const last = i * size + size - 1;
    for (let j = 0; j < rank; j++) {
      const v = vectors.data[last - j];
      grow[i * rank + j] = v * up[j];
      shrink[i * rank + j] = v * down[j];
    }
  }
  return {
    singularValues,
    grow: { rows: size, cols: rank, data: grow },
    shrink: { rows: size, cols: rank, data: shrink },
  };
}

/**
 * Elements of W widened to float64 per panel in the products below (32 MiB).
 * Each panel is one gemm call that packs X again, so smaller panels cost
 * time: for W [11008, 4096] and X [4096, 1679], 1024-row panels took 2.0 s
 * against 1.7 s for one gemm on a float64 copy of W (2-core AMD EPYC,
 * OpenBLAS 0.3.21, two threads).
 */
const PANEL_ELEMENTS = 1 << 22;

/**
 * Returns `W X` `[m, r]` for `W` `[m, n]` and `X` `[n, r]`, computed in
 * float64 and stored as `dtype` (float64 for a float64 W). A float32 W is
 * widened one row panel at a time, so no float64 copy of the whole W is made.
 * The arithmetic is that of one float64 gemm on a full copy, except that
 * gemm's blocking may change the last bits.
 */
async function multiplyRowPanels(w: Matrix, x: Matrix64, dtype: DType): Promise<Matrix> {
  if (w.data instanceof Float64Array) return native.gemm(w as Matrix64, x);

  const { rows: m, cols: n } = w;
  const r = x.cols;
  const out = allocate(m * r, dtype); // [m, r]
  const panelRows = Math.max(1, Math.floor(PANEL_ELEMENTS / Math.max(1, n)));
  const buffer = new Float64Array(Math.min(m, panelRows) * n); // [panelRows, n]
  for (let i0 = 0; i0 < m; i0 += panelRows) {
    const rows = Math.min(panelRows, m - i0);
    const panel = buffer.subarray(0, rows * n); // [rows, n]
    panel.set(w.data.subarray(i0 * n, (i0 + rows) * n));
    // gemm borrows the panel, so it is refilled only after this await.
    const product = await native.gemm({ rows, cols: n, data: panel }, x); // [rows, r]
    out.set(product.data, i0 * r);
  }
  return { rows: m, cols: r, data: out };
}

/**
 * Returns `X^T W` `[r, n]` for `X` `[m, r]` and `W` `[m, n]`, computed in
 * float64 and stored as `dtype` (float64 for a float64 W). A float32 W is
 * widened one column panel at a time, so no float64 copy of the whole W is
 * made. The arithmetic is that of one float64 gemm on a full copy, except
 * that gemm's blocking may change the last bits.
 */
async function multiplyColumnPanels(x: Matrix64, w: Matrix, dtype: DType): Promise<Matrix> {
  if (w.data instanceof Float64Array) return native.gemm(x, w as Matrix64, { transA: true });

  const { rows: m, cols: n } = w;
  const r = x.cols;
  const out = allocate(r * n, dtype); // [r, n]
  const panelCols = Math.max(1, Math.floor(PANEL_ELEMENTS / Math.max(1, m)));
  const buffer = new Float64Array(m * Math.min(n, panelCols)); // [m, panelCols]
  for (let j0 = 0; j0 < n; j0 += panelCols) {
    const cols = Math.min(panelCols, n - j0);
    const panel = buffer.subarray(0, m * cols); // [m, cols]
    for (let i = 0; i < m; i++) {
      panel.set(w.data.subarray(i * n + j0, i * n + j0 + cols), i * cols);
    }
    // gemm borrows the panel, so it is refilled only after this await.
    const wPanel: Matrix64 = { rows: m, cols, data: panel };
    const product = await native.gemm(x, wPanel, { transA: true }); // [r, cols]
    for (let j = 0; j < r; j++) {
      out.set(product.data.subarray(j * cols, (j + 1) * cols), j * n + j0);
    }
  }
  return { rows: r, cols: n, data: out };
}

/** Eckart–Young optimum: `sqrt(sum_{i > r} s_i^2)`. */
export function truncationError(singularValues: ArrayLike<number>, rank: number): number {
  let sum = 0;
  for (let i = rank; i < singularValues.length; i++) sum += singularValues[i] ** 2;
  return Math.sqrt(sum);
}
