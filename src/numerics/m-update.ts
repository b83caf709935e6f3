/**
 * M reconstruction steps for one linear layer. Given accumulated statistics
 * `H = X_hat X_hat^T` `[n, n]` and `C = Y X_hat^T` `[m, n]` over calibration
 * tokens, the original weight `W` `[m, n]` and a factor pair `A [m, r]`,
 * `B [r, n]`, the steps refit the pair toward `min ||Y - A B X_hat||_F`.
 * All arithmetic is float64.
 */

import { cast, type Matrix, type Matrix64, transpose } from "../linalg/matrix.ts";
import * as native from "../native/index.ts";

/** Ridge added to `H` in the B step, as in the reference recipe. */
export const DEFAULT_RIDGE = 1e-3;

export interface MStatistics {
  /** `X_hat X_hat^T`, `[n, n]` */
  h: Matrix;
  /** `Y X_hat^T`, `[m, n]` */
  c: Matrix;
  /** Original weight, `[m, n]` */
  w: Matrix;
}

function addScaledIdentity(a: Matrix64, mu: number): Matrix64 {
  const out = new Float64Array(a.data);
  for (let i = 0; i < a.rows; i++) out[i * a.cols + i] += mu;
  return { rows: a.rows, cols: a.cols, data: out };
}

/**
 * A step with `B` fixed: `A = C B^T (B H B^T)^(-1)` `[m, r]`, the exact
 * minimizer of `||Y - A B X_hat||_F^2` over `A`.
 */
export async function updateA(stats: MStatistics, b: Matrix): Promise<Matrix64> {
  const h = cast(stats.h, "float64");
  const c = cast(stats.c, "float64");
  const b64 = cast(b, "float64");
  const cbt = await native.gemm(c, b64, { transB: true }); // C B^T [m, r]
  const hbt = await native.gemm(h, b64, { transB: true }); // H B^T [n, r]
  const bhbt = await native.gemm(b64, hbt); // B H B^T [r, r], symmetric
  // A^T = (B H B^T)^(-1) (C B^T)^T because B H B^T is symmetric.
  const at = await native.luSolve(bhbt, transpose(cbt)); // [r, m]
  return transpose(at as Matrix64);
}

/**
 * B step with `A` fixed: the ridge fit `W~ = (C + mu W)(H + mu I)^(-1)`
 * `[m, n]`, then `B` `[r, n]` as the least-squares solution of `A B = W~`.
 */
export async function updateB(
  stats: MStatistics,
  a: Matrix,
  ridge = DEFAULT_RIDGE,
): Promise<{ b: Matrix64; target: Matrix64 }> {
  const h = cast(stats.h, "float64");
  const c = cast(stats.c, "float64");
  const w = cast(stats.w, "float64");
  const rhs = new Float64Array(c.data); // C + mu W [m, n]
  for (let i = 0; i < rhs.length; i++) rhs[i] += ridge * w.data[i];
  // W~^T = (H + mu I)^(-1) (C + mu W)^T since H + mu I is symmetric.
  const targetT = await native.luSolve(
    addScaledIdentity(h, ridge),
    transpose({ rows: c.rows, cols: c.cols, data: rhs }),
  ); // [n, m]
  const target = transpose(targetT as Matrix64); // W~ [m, n]
  const b = (await native.leastSquares(cast(a, "float64"), target)) as Matrix64; // [r, n]
  return { b, target };
}

export interface MRefitOptions {
  /** Alternating rounds, each an A step then a B step. */
  steps?: number;
  ridge?: number;
}

/** Alternates A and B steps for `steps` rounds, starting with A. */
export async function refitPair(
  stats: MStatistics,
  a: Matrix,
  b: Matrix,
  options: MRefitOptions = {},
): Promise<{ a: Matrix64; b: Matrix64 }> {
  const steps = options.steps ?? 2;
  let currentA = cast(a, "float64");
  let currentB = cast(b, "float64");
  for (let step = 0; step < steps; step++) {
    currentA = await updateA(stats, currentB);
    currentB = (await updateB(stats, currentA, options.ridge)).b;
  }
  return { a: currentA, b: currentB };
}
