import { describe, expect, it } from "vitest";
import { cast, type Matrix } from "../../src/linalg/matrix.ts";
import * as native from "../../src/native/index.ts";
import {
  lowRankForward,
  pifaForward,
  pifaFromLowRank,
  reconstructPifa,
} from "../../src/numerics/pifa.ts";
import { truncatedSvd } from "../../src/numerics/truncated-svd.ts";
import { powerLaw, randomMatrix, relativeError, withSpectrum } from "../helpers/matrices.ts";

async function lowRankSource(
  m: number,
  n: number,
  rank: number,
  seed: number,
  dtype: "float32" | "float64",
) {
  const w = await withSpectrum(m, n, powerLaw(Math.min(m, n), 0.6), seed);
  return truncatedSvd(cast(w, dtype), rank);
}

function expectSortedUnique(indices: Int32Array, bound: number): void {
  for (let i = 0; i < indices.length; i++) {
    expect(indices[i]).toBeGreaterThanOrEqual(0);
    expect(indices[i]).toBeLessThan(bound);
    if (i > 0) expect(indices[i]).toBeGreaterThan(indices[i - 1]);
  }
}

describe("pifaFromLowRank", () => {
  for (const [m, n, r] of [
    [256, 128, 64],
    [128, 256, 64],
    [172, 64, 30],
    [64, 64, 18],
  ] as const) {
    it(`reconstructs a float32 rank-${r} [${m}, ${n}] source to 1e-5`, async () => {
      const { a, b } = await lowRankSource(m, n, r, m + n, "float32");
      const source = await native.gemm(a, b);
      const layer = await pifaFromLowRank(a, b);
      expect(layer.pivotRows.rows).toBe(r);
      expect(layer.pivotRows.cols).toBe(n);
      expect(layer.coefficients.rows).toBe(m - r);
      expect(layer.coefficients.cols).toBe(r);
      expect(layer.pivotRows.data).toBeInstanceOf(Float32Array);
      expectSortedUnique(layer.pivots, m);
      expectSortedUnique(layer.rest, m);
      expect(new Set([...layer.pivots, ...layer.rest]).size).toBe(m);
      const rebuilt = await reconstructPifa(layer);
      expect(relativeError(rebuilt, source)).toBeLessThan(1e-5);
      expect(layer.maxAbsCoefficient).toBeGreaterThan(0);
    });
  }

  it("picks the rows that pivoted QR of W'^T picks, in float64", async () => {
    const { a, b } = await lowRankSource(90, 60, 20, 21, "float64");
    const w = await native.gemm(a, b); // [m, n]
    const layer = await pifaFromLowRank(a, b);
    const wt: Matrix = { rows: 60, cols: 90, data: new Float64Array(90 * 60) };
    for (let i = 0; i < 90; i++)
      for (let j = 0; j < 60; j++) wt.data[j * 90 + i] = w.data[i * 60 + j];
    const { pivots } = await native.qrPivoted(wt);
    const expected = Int32Array.from(pivots.subarray(0, 20)).sort();
    expect([...layer.pivots]).toEqual([...expected]);
    expect(relativeError(await reconstructPifa(layer), w)).toBeLessThan(1e-12);
  });

  it("handles rank = m with no coefficient rows", async () => {
    const { a, b } = await lowRankSource(16, 40, 16, 2, "float64");
    const layer = await pifaFromLowRank(a, b);
    expect(layer.coefficients.rows).toBe(0);
    expect([...layer.pivots]).toEqual(Array.from({ length: 16 }, (_, i) => i));
    expect(relativeError(await reconstructPifa(layer), await native.gemm(a, b))).toBeLessThan(
      1e-12,
    );
  });

  it("rejects factors that do not chain", async () => {
    await expect(pifaFromLowRank(randomMatrix(10, 4, 1), randomMatrix(5, 8, 2))).rejects.toThrow(
      /do not chain/,
    );
  });
});

describe("pifaForward", () => {
  it("matches the low-rank forward for a batch of tokens", async () => {
    const { a, b } = await lowRankSource(120, 80, 30, 5, "float32");
    const layer = await pifaFromLowRank(a, b);
    const x = cast(randomMatrix(64, 80, 6), "float32"); // [T, n]
    const expected = await lowRankForward(a, b, x); // [T, m]
    const actual = await pifaForward(layer, x);
    expect(actual.rows).toBe(64);
    expect(actual.cols).toBe(120);
    expect(relativeError(actual, expected)).toBeLessThan(1e-5);
  });

  it("works for a single token", async () => {
    const { a, b } = await lowRankSource(50, 40, 10, 8, "float64");
    const layer = await pifaFromLowRank(a, b);
    const x = randomMatrix(1, 40, 9);
    const expected = await native.gemm(x, await native.gemm(a, b), { transB: true });
    expect(relativeError(await pifaForward(layer, x), expected)).toBeLessThan(1e-12);
  });
});
