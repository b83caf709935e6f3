/**
 * PIFA (pivoting factorization): a lossless re-encoding of a rank-r layer
 * `W' = A B` `[m, n]` as r pivot rows of `W'` plus coefficients that rebuild
 * the other `m - r` rows from them. It stores `r n + (m - r) r` values
 * against `r (m + n)` for the pair.
 */

import { type FloatArray, type Matrix, selectRows, transpose } from "../linalg/matrix.ts";
import * as native from "../native/index.ts";

export interface PifaLayer {
  /** `W'[P, :]`, `[r, n]` */
  pivotRows: Matrix;
  /** `[m - r, r]`, with `W'[N, :] = coefficients @ pivotRows` */
  coefficients: Matrix;
  /** `P`, the pivot row indices, ascending, `[r]` */
  pivots: Int32Array;
  /** `N`, the other row indices, ascending, `[m - r]` */
  rest: Int32Array;
  /** Largest `|coefficient|`; it bounds how rounding errors grow on reconstruction. */
  maxAbsCoefficient: number;
  /** Output size `m` */
  rows: number;
}

function newLike(data: FloatArray, length: number): FloatArray {
  return data instanceof Float64Array ? new Float64Array(length) : new Float32Array(length);
}

/**
 * Converts a low-rank pair `A [m, r]`, `B [r, n]` to PIFA in factor space.
 *
 * With the thin QR `B^T = Q_B R_B`, `W'^T = Q_B M` where `M = R_B A^T` `[r, m]`,
 * so pivoted QR of the small `M` picks the same rows as pivoted QR of
 * `W'^T` would, in `O((m + n) r^2)`. With `M Pi = Q [R11 R12]`, the
 * coefficients are `T = R11^(-1) R12` by a triangular solve: forming
 * `A[N] A[P]^(-1)` instead loses accuracy in float32 because `A[P]` can be
 * badly conditioned.
 */
export async function pifaFromLowRank(a: Matrix, b: Matrix): Promise<PifaLayer> {
  const m = a.rows;
  const r = a.cols;
  const n = b.cols;
  if (b.rows !== r) {
    throw new RangeError(`factor shapes do not chain: A [${m}, ${r}] and B [${b.rows}, ${n}]`);
  }
  if (r > Math.min(m, n)) {
    throw new RangeError(
      `rank ${r} exceeds min(m, n) = ${Math.min(m, n)} for a [${m}, ${n}] layer`,
    );
  }

  const { r: rb } = await native.qr(transpose(b), { wantQ: false }); // R_B [r, r]
  const mFactor = await native.gemm(rb, a, { transB: true }); // M = R_B A^T [r, m]
  const { r: rFull, pivots: order } = await native.qrPivoted(mFactor); // R [r, m]

  // Split R = [R11 R12]: R11 [r, r] upper triangular, R12 [r, m - r].
  const restCount = m - r;
  const r11 = newLike(rFull.data, r * r);
  const r12 = newLike(rFull.data, r * restCount);
  for (let i = 0; i < r; i++) {
    const row = rFull.data.subarray(i * m, (i + 1) * m);
    r11.set(row.subarray(0, r), i * r);
    r12.set(row.subarray(r), i * restCount);
  }

  const pivots = Int32Array.from(order.subarray(0, r)).sort();
  const rest = Int32Array.from(order.subarray(r)).sort();

  let coefficients: Matrix;
  let maxAbsCoefficient = 0;
  if (restCount === 0) {
    coefficients = { rows: 0, cols: r, data: newLike(rFull.data, 0) };
  } else {
    // T [r, m - r]: row i belongs to pivot order[i], column j to rest order[r + j].
    const t = await native.trsm(
      { rows: r, cols: r, data: r11 },
      { rows: r, cols: restCount, data: r12 },
      { side: "left", lower: false },
    );
    // Position of each row index in the pivoted order, to reorder T^T into
    // ascending P (columns) and ascending N (rows).
    const position = new Int32Array(m);
    for (let k = 0; k < m; k++) position[order[k]] = k;
    const out = newLike(rFull.data, restCount * r); // [m - r, r]
    for (let k = 0; k < restCount; k++) {
      const tCol = position[rest[k]] - r;
      for (let l = 0; l < r; l++) {
        const value = t.data[position[pivots[l]] * restCount + tCol];
        out[k * r + l] = value;
        const magnitude = Math.abs(value);
        if (magnitude > maxAbsCoefficient) maxAbsCoefficient = magnitude;
      }
    }
    coefficients = { rows: restCount, cols: r, data: out };
  }

  const pivotRows = await native.gemm(selectRows(a, pivots), b); // A[P, :] B [r, n]
  return { pivotRows, coefficients, pivots, rest, maxAbsCoefficient, rows: m };
}

/** Rebuilds the dense `W'` `[m, n]` from its PIFA form. */
export async function reconstructPifa(layer: PifaLayer): Promise<Matrix> {
  const { pivotRows, coefficients, pivots, rest, rows: m } = layer;
  const n = pivotRows.cols;
  const out = newLike(pivotRows.data, m * n); // [m, n]
  for (let l = 0; l < pivots.length; l++) {
    out.set(pivotRows.data.subarray(l * n, (l + 1) * n), pivots[l] * n);
  }
  if (rest.length > 0) {
    const restRows = await native.gemm(coefficients, pivotRows); // [m - r, n]
    for (let k = 0; k < rest.length; k++) {
      out.set(restRows.data.subarray(k * n, (k + 1) * n), rest[k] * n);
    }
  }
  return { rows: m, cols: n, data: out };
}

/**
 * PIFA forward for a batch of tokens `x` `[T, n]` (one token per row):
 * `y[:, P] = x pivotRows^T` `[T, r]`, `y[:, N] = y[:, P] coefficients^T`
 * `[T, m - r]`, returned as `[T, m]`. Multiply-adds per token:
 * `r n + (m - r) r`.
 */
export async function pifaForward(layer: PifaLayer, x: Matrix): Promise<Matrix> {
  const { pivotRows, coefficients, pivots, rest, rows: m } = layer;
  const tokens = x.rows;
  const r = pivots.length;
  const yPivot = await native.gemm(x, pivotRows, { transB: true }); // [T, r]
  const out = newLike(yPivot.data, tokens * m); // [T, m]
  for (let t = 0; t < tokens; t++) {
    for (let l = 0; l < r; l++) out[t * m + pivots[l]] = yPivot.data[t * r + l];
  }
  if (rest.length > 0) {
    const yRest = await native.gemm(yPivot, coefficients, { transB: true }); // [T, m - r]
    const restCount = rest.length;
    for (let t = 0; t < tokens; t++) {
      for (let k = 0; k < restCount; k++) out[t * m + rest[k]] = yRest.data[t * restCount + k];
    }
  }
  return { rows: tokens, cols: m, data: out };
}

/** Low-rank forward `y = (x B^T) A^T` for `x` `[T, n]`, returned as `[T, m]`. */
export async function lowRankForward(a: Matrix, b: Matrix, x: Matrix): Promise<Matrix> {
  const hidden = await native.gemm(x, b, { transB: true }); // [T, r]
  return native.gemm(hidden, a, { transB: true }); // [T, m]
}

/** `N`: the row indices in `[0, m)` that are not pivots, ascending, `[m - r]`. */
export function restIndices(pivots: Int32Array, m: number): Int32Array {
  const isPivot = new Uint8Array(m);
  for (const pivot of pivots) isPivot[pivot] = 1;
  const rest = new Int32Array(m - pivots.length);
  for (let i = 0, k = 0; i < m; i++) if (isPivot[i] === 0) rest[k++] = i;
  return rest;
}
