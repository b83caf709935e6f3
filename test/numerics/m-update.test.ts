import { describe, expect, it } from "vitest";
import type { Matrix } from "../../src/linalg/matrix.ts";
import * as native from "../../src/native/index.ts";
import { type MStatistics, refitPair, updateA, updateB } from "../../src/numerics/m-update.ts";
import { truncatedSvd } from "../../src/numerics/truncated-svd.ts";
import { randomMatrix } from "../helpers/matrices.ts";

function squaredNorm(a: Matrix): number {
  let sum = 0;
  for (const v of a.data) sum += v * v;
  return sum;
}

function subtract(a: Matrix, b: Matrix): Matrix {
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = a.data[i] - b.data[i];
  return { rows: a.rows, cols: a.cols, data: out };
}

/**
 * A layer whose compressed-stream inputs `X_hat` differ from the dense ones,
 * with targets `Y = (1 - lambda) W X_hat + lambda W X`.
 */
async function problem(m: number, n: number, tokens: number, lambda = 0.25) {
  const w = randomMatrix(m, n, 1);
  const x = randomMatrix(n, tokens, 2); // dense stream [n, T]
  const noise = randomMatrix(n, tokens, 3);
  const xHat: Matrix = { rows: n, cols: tokens, data: new Float64Array(n * tokens) };
  for (let i = 0; i < xHat.data.length; i++) xHat.data[i] = x.data[i] + 0.3 * noise.data[i];
  const wxHat = await native.gemm(w, xHat);
  const wx = await native.gemm(w, x);
  const y: Matrix = { rows: m, cols: tokens, data: new Float64Array(m * tokens) };
  for (let i = 0; i < y.data.length; i++) {
    y.data[i] = (1 - lambda) * wxHat.data[i] + lambda * wx.data[i];
  }
  const stats: MStatistics = {
    h: await native.syrk(xHat), // [n, n]
    c: await native.gemm(y, xHat, { transB: true }), // [m, n]
    w,
  };
  return { w, xHat, y, stats };
}

async function objective(y: Matrix, a: Matrix, b: Matrix, xHat: Matrix): Promise<number> {
  const abx = await native.gemm(a, await native.gemm(b, xHat));
  return squaredNorm(subtract(y, abx));
}

describe("M steps", () => {
  it("A step lowers ||Y - A B X_hat|| and is its minimizer", async () => {
    const { w, xHat, y, stats } = await problem(40, 30, 300);
    const { a, b } = await truncatedSvd(w, 8);
    const before = await objective(y, a, b, xHat);
    const a1 = await updateA(stats, b);
    const after = await objective(y, a1, b, xHat);
    expect(after).toBeLessThan(before);
    // Any perturbation of the minimizer raises the objective.
    const perturbed = { ...a1, data: a1.data.map((v, i) => (i === 0 ? v + 1e-3 : v)) };
    expect(await objective(y, perturbed, b, xHat)).toBeGreaterThan(after);
  });

  it("B step lowers the ridge objective and fits A B to W~", async () => {
    const { w, xHat, y, stats } = await problem(40, 30, 300);
    const { a, b } = await truncatedSvd(w, 8);
    const mu = 1e-3;
    const ridgeObjective = async (candidate: Matrix) =>
      squaredNorm(subtract(y, await native.gemm(candidate, xHat))) +
      mu * squaredNorm(subtract(candidate, w));
    const { b: b1, target } = await updateB(stats, a, mu);
    // W~ minimizes the ridge objective, so it beats both W and the old pair.
    expect(await ridgeObjective(target)).toBeLessThan(await ridgeObjective(w));
    expect(await ridgeObjective(target)).toBeLessThan(
      await ridgeObjective(await native.gemm(a, b)),
    );
    // B is the least-squares fit: ||A B1 - W~|| <= ||A B - W~||.
    const fitNew = squaredNorm(subtract(await native.gemm(a, b1), target));
    const fitOld = squaredNorm(subtract(await native.gemm(a, b), target));
    expect(fitNew).toBeLessThan(fitOld);
    expect(await objective(y, a, b1, xHat)).toBeLessThan(await objective(y, a, b, xHat));
  });

  it("refitPair beats the plain truncation on the compressed stream", async () => {
    const { w, xHat, y, stats } = await problem(48, 32, 400);
    const { a, b } = await truncatedSvd(w, 10);
    const refit = await refitPair(stats, a, b, { steps: 2 });
    expect(refit.a.rows).toBe(48);
    expect(refit.b.cols).toBe(32);
    const plain = await objective(y, a, b, xHat);
    const oneStep = await refitPair(stats, a, b, { steps: 1 });
    expect(await objective(y, oneStep.a, oneStep.b, xHat)).toBeLessThan(plain);
    expect(await objective(y, refit.a, refit.b, xHat)).toBeLessThan(plain);
  });
});
