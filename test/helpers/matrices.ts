import type { FloatArray, Matrix } from "../../src/linalg/matrix.ts";
import * as native from "../../src/native/index.ts";

/** Deterministic generator (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples by Box–Muller. */
export function gaussian(random: () => number): () => number {
  return () => {
    const u = 1 - random();
    const v = random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

export function randomMatrix(
  rows: number,
  cols: number,
  seed: number,
  dtype: "float32" | "float64" = "float64",
): Matrix {
  const next = gaussian(rng(seed));
  const data: FloatArray =
    dtype === "float64" ? new Float64Array(rows * cols) : new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = next();
  return { rows, cols, data };
}

/** Random `[rows, cols]` with orthonormal columns, from a thin QR. */
export async function orthonormal(rows: number, cols: number, seed: number): Promise<Matrix> {
  const { q } = await native.qr(randomMatrix(rows, cols, seed));
  return q;
}

/**
 * `U diag(s) V^T` `[m, n]` in float64 with random orthonormal factors and the
 * given singular values (length `min(m, n)`).
 */
export async function withSpectrum(
  m: number,
  n: number,
  singularValues: ArrayLike<number>,
  seed: number,
): Promise<Matrix> {
  const k = Math.min(m, n);
  const u = await orthonormal(m, k, seed);
  const v = await orthonormal(n, k, seed + 1);
  const us = new Float64Array(m * k); // [m, k]
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < k; j++) us[i * k + j] = u.data[i * k + j] * singularValues[j];
  }
  return native.gemm({ rows: m, cols: k, data: us }, v, { transB: true });
}

/** Power-law spectrum `s_i = (i + 1)^(-alpha)`. */
export function powerLaw(count: number, alpha: number): Float64Array {
  const s = new Float64Array(count);
  for (let i = 0; i < count; i++) s[i] = (i + 1) ** -alpha;
  return s;
}

export function relativeError(approx: Matrix, exact: Matrix): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < exact.data.length; i++) {
    const d = approx.data[i] - exact.data[i];
    diff += d * d;
    norm += exact.data[i] * exact.data[i];
  }
  return Math.sqrt(diff / norm);
}
