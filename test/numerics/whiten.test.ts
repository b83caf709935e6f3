import { describe, expect, it } from "vitest";
import type { Matrix } from "../../src/linalg/matrix.ts";
import * as native from "../../src/native/index.ts";
import { truncatedSvd } from "../../src/numerics/truncated-svd.ts";
import { whitenedSvd, whiteningFactor } from "../../src/numerics/whiten.ts";
import { randomMatrix } from "../helpers/matrices.ts";

/** `||(W - A B) X||_F` for inputs `X` as columns `[n, T]`. */
async function activationError(w: Matrix, a: Matrix, b: Matrix, x: Matrix): Promise<number> {
  const approx = await native.gemm(a, b);
  const diff = new Float64Array(w.data.length);
  for (let i = 0; i < diff.length; i++) diff[i] = w.data[i] - approx.data[i];
  const out = await native.gemm({ rows: w.rows, cols: w.cols, data: diff }, x);
  let sum = 0;
  for (const v of out.data) sum += v * v;
  return Math.sqrt(sum);
}

/** Correlated inputs: `X = M Z` with a random mixing `M` that has uneven scales. */
async function correlatedInputs(n: number, tokens: number, seed: number): Promise<Matrix> {
  const mix = randomMatrix(n, n, seed);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) mix.data[i * n + j] *= (j + 1) ** -1.5;
  }
  return native.gemm(mix, randomMatrix(n, tokens, seed + 1));
}

describe("whitenedSvd", () => {
  it("gives a smaller activation error than plain SVD on correlated inputs", async () => {
    const m = 48;
    const n = 40;
    const w = randomMatrix(m, n, 5);
    const x = await correlatedInputs(n, 400, 9); // [n, T]
    const gram = await native.syrk(x); // X X^T [n, n]
    const rank = 12;
    const plain = await truncatedSvd(w, rank);
    const whitened = await whitenedSvd(w, gram, rank);
    expect(whitened.shift).toBe(0);
    const plainError = await activationError(w, plain.a, plain.b, x);
    const whitenedError = await activationError(w, whitened.a, whitened.b, x);
    expect(whitenedError).toBeLessThan(plainError * 0.9);
  });

  it("equals the optimum sqrt(sum of dropped s_i^2) of W L", async () => {
    const w = randomMatrix(30, 20, 2);
    const x = await correlatedInputs(20, 200, 4);
    const gram = await native.syrk(x);
    const { l } = await whiteningFactor(gram);
    const wl = await native.gemm(w, l);
    const { s } = await native.svd(wl);
    const rank = 6;
    const { a, b } = await whitenedSvd(w, gram, rank);
    let dropped = 0;
    for (let i = rank; i < s.length; i++) dropped += s[i] * s[i];
    // ||(W - A B) X||_F = ||(W - A B) L||_F when X X^T = L L^T.
    const error = await activationError(w, a, b, x);
    expect(Math.abs(error - Math.sqrt(dropped)) / Math.sqrt(dropped)).toBeLessThan(1e-8);
  });

  it("shifts a singular Gram matrix and still factors it", async () => {
    const n = 16;
    const x = randomMatrix(n, 4, 3); // rank 4 < n: G is singular
    const gram = await native.syrk(x);
    const { l, shift } = await whiteningFactor(gram);
    expect(shift).toBeGreaterThan(0);
    const rebuilt = await native.gemm(l, l, { transB: true });
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const expected = gram.data[i * n + j] + (i === j ? shift : 0);
        expect(rebuilt.data[i * n + j]).toBeCloseTo(expected, 8);
      }
    }
    const w = randomMatrix(10, n, 8);
    const { a, b } = await whitenedSvd(w, gram, 3);
    expect(a.rows).toBe(10);
    expect(b.cols).toBe(n);
    for (const v of b.data) expect(Number.isFinite(v)).toBe(true);
  });

  it("rejects a Gram matrix of the wrong size", async () => {
    const w = randomMatrix(10, 8, 1);
    const gram = await native.syrk(randomMatrix(7, 20, 2));
    await expect(whitenedSvd(w, gram, 2)).rejects.toThrow(/input size 8/);
  });
});
