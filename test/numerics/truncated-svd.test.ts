import { describe, expect, it } from "vitest";
import { cast, frobeniusDistance } from "../../src/linalg/matrix.ts";
import * as native from "../../src/native/index.ts";
import { truncatedSvd, truncationError } from "../../src/numerics/truncated-svd.ts";
import { powerLaw, randomMatrix, withSpectrum } from "../helpers/matrices.ts";

function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let max = 0;
  for (let i = 0; i < actual.length; i++) max = Math.max(max, Math.abs(actual[i] - expected[i]));
  return max;
}

describe("truncatedSvd", () => {
  for (const route of ["gram", "gesdd"] as const) {
    for (const [m, n] of [
      [96, 64],
      [64, 96],
      [80, 80],
    ] as const) {
      it(`${route} on [${m}, ${n}] reaches the Eckart–Young optimum`, async () => {
        const spectrum = powerLaw(Math.min(m, n), 0.8);
        const w = await withSpectrum(m, n, spectrum, 7);
        const rank = 20;
        const { a, b, singularValues } = await truncatedSvd(w, rank, { route });
        expect(a.rows).toBe(m);
        expect(a.cols).toBe(rank);
        expect(b.rows).toBe(rank);
        expect(b.cols).toBe(n);
        for (let i = 0; i < rank; i++) expect(singularValues[i]).toBeCloseTo(spectrum[i], 10);
        const approx = await native.gemm(a, b);
        const error = frobeniusDistance(approx, w);
        const optimum = truncationError(spectrum, rank);
        expect(Math.abs(error - optimum) / optimum).toBeLessThan(1e-8);
      });
    }
  }

  it("float32 input returns float32 factors near the optimum", async () => {
    const spectrum = powerLaw(64, 1);
    const w32 = cast(await withSpectrum(128, 64, spectrum, 3), "float32");
    for (const route of ["gram", "gesdd"] as const) {
      const { a, b } = await truncatedSvd(w32, 16, { route });
      expect(a.data).toBeInstanceOf(Float32Array);
      const error = frobeniusDistance(await native.gemm(a, b), w32);
      const optimum = truncationError(spectrum, 16);
      expect(Math.abs(error - optimum) / optimum).toBeLessThan(1e-4);
    }
  });

  // The gram route widens a float32 W to float64 in panels of 2^22 elements,
  // so 2^21 + 3 rows (or columns) of 2 make one full panel and a partial one.
  for (const [m, n] of [
    [2 ** 21 + 3, 2],
    [2, 2 ** 21 + 3],
  ] as const) {
    it(`gram on float32 [${m}, ${n}] matches float64 input across panels`, async () => {
      const w32 = randomMatrix(m, n, 13, "float32");
      const w64 = cast(w32, "float64");
      const panels = await truncatedSvd(w32, 2, { dtype: "float64" });
      const whole = await truncatedSvd(w64, 2);
      expect([panels.a.rows, panels.a.cols, panels.b.rows, panels.b.cols]).toEqual([m, 2, 2, n]);
      expect(maxAbsDiff(panels.singularValues, whole.singularValues)).toBe(0);
      const scale = whole.singularValues[0];
      expect(maxAbsDiff(panels.a.data, whole.a.data)).toBeLessThan(1e-12 * scale);
      expect(maxAbsDiff(panels.b.data, whole.b.data)).toBeLessThan(1e-12 * scale);

      const rankOne = await truncatedSvd(w32, 1, { dtype: "float64" });
      const error = frobeniusDistance(await native.gemm(rankOne.a, rankOne.b), w64);
      const optimum = truncationError(whole.singularValues, 1);
      expect(Math.abs(error - optimum) / optimum).toBeLessThan(1e-8);
    });
  }

  it("gram and gesdd agree on a random matrix", async () => {
    const w = randomMatrix(70, 50, 11);
    const viaGram = await truncatedSvd(w, 10, { route: "gram" });
    const viaGesdd = await truncatedSvd(w, 10, { route: "gesdd" });
    const lhs = await native.gemm(viaGram.a, viaGram.b);
    const rhs = await native.gemm(viaGesdd.a, viaGesdd.b);
    expect(
      frobeniusDistance(lhs, rhs) /
        frobeniusDistance(rhs, { ...rhs, data: new Float64Array(rhs.data.length) }),
    ).toBeLessThan(1e-9);
  });

  it("rejects ranks outside 1..min(m, n)", async () => {
    const w = randomMatrix(8, 5, 1);
    await expect(truncatedSvd(w, 0)).rejects.toThrow(/rank/);
    await expect(truncatedSvd(w, 6)).rejects.toThrow(/1\.\.5/);
  });

  it("rejects non-finite weights", async () => {
    const w = randomMatrix(8, 5, 1);
    w.data[3] = Number.NaN;
    await expect(truncatedSvd(w, 2, { route: "gesdd" })).rejects.toMatchObject({
      code: "NON_FINITE",
    });
    await expect(truncatedSvd(w, 2, { route: "gram" })).rejects.toMatchObject({
      code: "NON_FINITE",
    });
  });
});
