/**
 * Data-free compression of one linear layer `W [m, n]`: truncated SVD to the
 * method's rank, then PIFA when the method stores it. Returns the tensors
 * to store (already rounded to the output dtype) and the layer's report row.
 */

import { performance } from "node:perf_hooks";
import type { FloatDtype } from "../../src/checkpoint/dtypes.ts";
import { decodeFloat32, encodeFloat32 } from "../../src/checkpoint/float-codec.ts";
import type { Matrix32 } from "../../src/linalg/matrix.ts";
import { pifaFromLowRank } from "../../src/numerics/pifa.ts";
import { paramsFor, type Representation } from "../../src/numerics/rank.ts";
import { truncatedSvd } from "../../src/numerics/truncated-svd.ts";
import { lowRankRelativeError, pifaRelativeError } from "./stored-error.ts";

export interface OutputTensor {
  name: string;
  dtype: FloatDtype | "I32";
  shape: number[];
  bytes: Buffer;
}

export interface LayerReport {
  name: string;
  shape: [number, number];
  rank: number;
  representation: Representation;
  params_before: number;
  params_after: number;
  /** `||W - W_hat||_F / ||W||_F` in float64, with `W_hat` rebuilt from the stored (rounded) tensors. */
  relative_error: number;
  max_abs_coefficient?: number;
  seconds: number;
}

/** `X.weight` -> `X`; other names are kept whole as the prefix. */
export function modulePrefix(weightName: string): string {
  return weightName.endsWith(".weight") ? weightName.slice(0, -".weight".length) : weightName;
}

/** Output tensor names and shapes for a layer, known before any math runs. */
export function plannedTensors(
  weightName: string,
  m: number,
  n: number,
  rank: number,
  representation: Representation,
  dtype: FloatDtype,
): Array<Omit<OutputTensor, "bytes">> {
  const prefix = modulePrefix(weightName);
  if (representation === "pifa") {
    return [
      { name: `${prefix}.pivot_rows`, dtype, shape: [rank, n] },
      { name: `${prefix}.coefficients`, dtype, shape: [m - rank, rank] },
      { name: `${prefix}.pivots`, dtype: "I32", shape: [rank] },
    ];
  }
  return [
    { name: `${prefix}.u`, dtype, shape: [m, rank] },
    { name: `${prefix}.v`, dtype, shape: [rank, n] },
  ];
}

/** Rounds through the output dtype so the error is measured on what is stored. */
function stored(matrix: Matrix32, dtype: FloatDtype): { bytes: Buffer; values: Matrix32 } {
  const bytes = encodeFloat32(matrix.data, dtype);
  const values = dtype === "F32" ? matrix : { ...matrix, data: decodeFloat32(bytes, dtype) };
  return { bytes, values };
}

/**
 * Encodes a factor pair `a [m, r]`, `b [r, n]` of the weight `w` `[m, n]` as
 * the stored tensors (PIFA or the pair itself), and measures the error of
 * what is stored. `started` is the `performance.now()` at which work on the
 * layer began, for the report's seconds.
 */
export async function encodeLayer(
  name: string,
  w: Matrix32,
  a: Matrix32,
  b: Matrix32,
  representation: Representation,
  dtype: FloatDtype,
  started: number,
): Promise<{ tensors: OutputTensor[]; report: LayerReport }> {
  const { rows: m, cols: n } = w;
  const rank = a.cols;
  const [first, second, third] = plannedTensors(name, m, n, rank, representation, dtype);

  let tensors: OutputTensor[];
  let relativeError: number;
  let maxAbsCoefficient: number | undefined;
  if (representation === "pifa") {
    const layer = await pifaFromLowRank(a, b);
    const pivotRows = stored(layer.pivotRows as Matrix32, dtype);
    const coefficients = stored(layer.coefficients as Matrix32, dtype);
    const pivotBytes = Buffer.from(
      layer.pivots.buffer,
      layer.pivots.byteOffset,
      layer.pivots.byteLength,
    );
    tensors = [
      { ...first, bytes: pivotRows.bytes },
      { ...second, bytes: coefficients.bytes },
      { ...third, bytes: Buffer.from(pivotBytes) },
    ];
    relativeError = await pifaRelativeError(w, {
      pivotRows: pivotRows.values,
      coefficients: coefficients.values,
      pivots: layer.pivots,
      rest: layer.rest,
    });
    maxAbsCoefficient = layer.maxAbsCoefficient;
  } else {
    const u = stored(a, dtype);
    const v = stored(b, dtype);
    tensors = [
      { ...first, bytes: u.bytes },
      { ...second, bytes: v.bytes },
    ];
    relativeError = await lowRankRelativeError(w, u.values, v.values);
  }

  const report: LayerReport = {
    name,
    shape: [m, n],
    rank,
    representation,
    params_before: m * n,
    params_after: paramsFor(representation, m, n, rank),
    relative_error: relativeError,
    seconds: 0,
  };
  if (maxAbsCoefficient !== undefined) report.max_abs_coefficient = maxAbsCoefficient;
  report.seconds = (performance.now() - started) / 1000;
  return { tensors, report };
}

/** Data-free compression of `w` `[m, n]`: truncated SVD to `rank`, then the method's encoding. */
export async function compressLayer(
  name: string,
  w: Matrix32,
  rank: number,
  representation: Representation,
  dtype: FloatDtype,
): Promise<{ tensors: OutputTensor[]; report: LayerReport }> {
  const started = performance.now();
  const pair = await truncatedSvd(w, rank, { dtype: "float32" });
  return encodeLayer(
    name,
    w,
    pair.a as Matrix32,
    pair.b as Matrix32,
    representation,
    dtype,
    started,
  );
}
