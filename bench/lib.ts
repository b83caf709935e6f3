/** Shared helpers for the benchmarks: timing, medians and synthetic layers. */

import { performance } from "node:perf_hooks";
import type { Matrix32 } from "../src/linalg/matrix.ts";
import * as native from "../src/native/index.ts";

export function median(samples: number[]): number {
  const sorted = [...samples].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Runs `fn` `runs` times and returns the wall-clock seconds of each run. */
export async function timeIt(runs: number, fn: () => Promise<unknown>): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    samples.push((performance.now() - start) / 1000);
  }
  return samples;
}

function gaussianFill(data: Float32Array, seed: number): void {
  let state = seed >>> 0 || 1;
  const uniform = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return ((state >>> 0) + 0.5) / 4294967296;
  };
  for (let i = 0; i < data.length; i++) {
    data[i] = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  }
}

/**
 * A float32 layer `[m, n]` with singular values `s_i = (i + 1)^(-alpha)`,
 * built as `U diag(s) V^T` from thin QRs of Gaussian matrices.
 */
export async function synthLayer(
  m: number,
  n: number,
  alpha: number,
  seed: number,
): Promise<Matrix32> {
  const k = Math.min(m, n);
  const g1 = new Float32Array(m * k);
  const g2 = new Float32Array(n * k);
  gaussianFill(g1, seed);
  gaussianFill(g2, seed + 1);
  const { q: u } = await native.qr({ rows: m, cols: k, data: g1 }); // [m, k]
  const { q: v } = await native.qr({ rows: n, cols: k, data: g2 }); // [n, k]
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < k; j++) u.data[i * k + j] *= (j + 1) ** -alpha;
  }
  return (await native.gemm(u, v, { transB: true })) as Matrix32; // [m, n]
}
