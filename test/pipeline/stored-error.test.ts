import { describe, expect, it } from "vitest";
import { cast, type Matrix32 } from "../../src/linalg/matrix.ts";
import * as native from "../../src/native/index.ts";
import { pifaFromLowRank, reconstructPifa } from "../../src/numerics/pifa.ts";
import { truncatedSvd } from "../../src/numerics/truncated-svd.ts";
import {
  errorBlockRows,
  lowRankRelativeError,
  pifaRelativeError,
} from "../../workers/pipeline/stored-error.ts";
import { powerLaw, relativeError, withSpectrum } from "../helpers/matrices.ts";

/** Builds a float32 `[m, n]` weight with a power-law spectrum and its rank-`r` factor pair. */
async function layerWithFactors(m: number, n: number, r: number, seed: number) {
  const w = cast(await withSpectrum(m, n, powerLaw(Math.min(m, n), 0.8), seed), "float32");
  const { a, b } = await truncatedSvd(w, r);
  return { w, a: a as Matrix32, b: b as Matrix32 };
}

/**
 * Blocked and dense rebuilds run float32 GEMMs of different shapes, and OpenBLAS kernels round
 * those differently (4e-9 apart on AMD Zen, under 1e-9 on Intel SkylakeX). A wrong block offset moves the error
 * by orders of magnitude more.
 */
const BLOCKED_TOLERANCE = 1e-7;

describe("stored layer error", () => {
  // Several blocks with a partial last one, one row per block, and one block for the whole layer.
  for (const [m, n, r, blockRows] of [
    [300, 160, 64, 64],
    [64, 200, 20, 1],
    [96, 128, 30, errorBlockRows(128)],
  ] as const) {
    it(`PIFA [${m}, ${n}] rank ${r}, ${blockRows}-row blocks, matches dense`, async () => {
      const { w, a, b } = await layerWithFactors(m, n, r, m + n);
      const layer = await pifaFromLowRank(a, b);
      const dense = await reconstructPifa(layer);
      const blocked = await pifaRelativeError(
        w,
        {
          pivotRows: layer.pivotRows as Matrix32,
          coefficients: layer.coefficients as Matrix32,
          pivots: layer.pivots,
          rest: layer.rest,
        },
        blockRows,
      );
      const expected = relativeError(dense, w);
      expect(expected).toBeGreaterThan(1e-3);
      expect(Math.abs(blocked - expected) / expected).toBeLessThan(BLOCKED_TOLERANCE);
    });

    it(`low-rank [${m}, ${n}] rank ${r}, ${blockRows}-row blocks, matches dense`, async () => {
      const { w, a, b } = await layerWithFactors(m, n, r, m * n);
      const dense = await native.gemm(a, b); // [m, n]
      const blocked = await lowRankRelativeError(w, a, b, blockRows);
      const expected = relativeError(dense, w);
      expect(expected).toBeGreaterThan(1e-3);
      expect(Math.abs(blocked - expected) / expected).toBeLessThan(BLOCKED_TOLERANCE);
    });
  }

  it("PIFA at full rank is exact", async () => {
    const { w, a, b } = await layerWithFactors(48, 48, 48, 7);
    const layer = await pifaFromLowRank(a, b);
    const error = await pifaRelativeError(w, {
      pivotRows: layer.pivotRows as Matrix32,
      coefficients: layer.coefficients as Matrix32,
      pivots: layer.pivots,
      rest: layer.rest,
    });
    expect(layer.rest.length).toBe(0);
    expect(error).toBeLessThan(1e-5);
  });

  it("block size covers 32 MiB of rows", () => {
    expect(errorBlockRows(4096)).toBe(2048);
    expect(errorBlockRows(11008)).toBe(762);
    expect(errorBlockRows(2 ** 24)).toBe(1);
  });

  it("zero weight and zero factors give 0", async () => {
    const zeros = (rows: number, cols: number): Matrix32 => ({
      rows,
      cols,
      data: new Float32Array(rows * cols),
    });
    expect(await lowRankRelativeError(zeros(8, 6), zeros(8, 2), zeros(2, 6))).toBe(0);
  });

  it("zero weight with nonzero factors is infinite", async () => {
    const w: Matrix32 = { rows: 4, cols: 3, data: new Float32Array(12) };
    const u: Matrix32 = { rows: 4, cols: 1, data: Float32Array.from([1, 0, 0, 0]) };
    const v: Matrix32 = { rows: 1, cols: 3, data: Float32Array.from([1, 2, 3]) };
    expect(await lowRankRelativeError(w, u, v)).toBe(Number.POSITIVE_INFINITY);
  });
});
