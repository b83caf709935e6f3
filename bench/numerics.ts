/**
 * Numerics benchmark on LLaMA-7B-shaped layers (float32, power-law spectra):
 *   1. truncated SVD to the PIFA rank at density 0.5, by each route;
 *   2. PIFA conversion in factor space against the reference recipe
 *      (form W = A B, pivoted QR of W^T, least squares for the coefficients);
 *   3. layer forward at r = min(m, n) / 2 for 1 and 64 tokens: dense,
 *      low-rank, PIFA.
 *
 * Usage: npm run bench:numerics -- [--json PATH] [--repeats N] [--shapes 4096x4096,11008x4096]
 * Prints a table and writes JSON (default bench/results/numerics-<date>.json).
 */

import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { cast, type Matrix, type Matrix32, selectRows, transpose } from "../src/linalg/matrix.ts";
import * as native from "../src/native/index.ts";
import {
  lowRankForward,
  pifaForward,
  pifaFromLowRank,
  reconstructPifa,
} from "../src/numerics/pifa.ts";
import { pifaRank } from "../src/numerics/rank.ts";
import { truncatedSvd } from "../src/numerics/truncated-svd.ts";
import { median, synthLayer, timeIt } from "./lib.ts";

const { values } = parseArgs({
  options: {
    json: { type: "string" },
    repeats: { type: "string", default: "3" },
    shapes: { type: "string", default: "4096x4096,11008x4096" },
  },
});
const repeats = Number(values.repeats);
const shapes = (values.shapes ?? "")
  .split(",")
  .map((s) => s.split("x").map(Number) as [number, number]);

/** The PIFA authors' recipe: form W, pivot rows by geqp3 on W^T, coefficients by least squares. */
async function referenceConversion(a: Matrix32, b: Matrix32) {
  const r = a.cols;
  const w = await native.gemm(a, b); // [m, n]
  const { pivots } = await native.qrPivoted(transpose(w)); // W^T [n, m]
  const chosen = Int32Array.from(pivots.subarray(0, r)).sort();
  const rest = Int32Array.from(pivots.subarray(r)).sort();
  // W[rest] = C W[P]  <=>  W[P]^T C^T = W[rest]^T
  const pivotRows = selectRows(w, chosen); // [r, n]
  const restRows = selectRows(w, rest); // [m - r, n]
  const ct = await native.leastSquares(transpose(pivotRows), transpose(restRows)); // [r, m - r]
  return {
    pivotRows,
    coefficients: transpose(ct),
    pivots: chosen,
    rest,
    rows: w.rows,
    maxAbsCoefficient: Number.NaN,
  };
}

function relativeError(approx: Matrix, exact: Matrix): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < exact.data.length; i++) {
    const d = approx.data[i] - exact.data[i];
    diff += d * d;
    norm += exact.data[i] * exact.data[i];
  }
  return Math.sqrt(diff / norm);
}

const results = [];
for (const [m, n] of shapes) {
  console.error(`\n== layer [${m}, ${n}] ==`);
  const w = await synthLayer(m, n, 1.0, 42);
  const rank = pifaRank(m, n, 0.5);
  const svdSeconds: Record<string, number> = {};
  for (const route of ["gram", "gesdd"] as const) {
    // gesdd at this size runs about a minute: one run is enough to rank the routes.
    const runs = route === "gesdd" ? 1 : repeats;
    svdSeconds[route] = median(await timeIt(runs, () => truncatedSvd(w, rank, { route })));
    console.error(`truncated SVD via ${route}: ${svdSeconds[route].toFixed(2)} s`);
  }

  const half = Math.floor(Math.min(m, n) / 2);
  const { a, b } = await truncatedSvd(w, half);
  const a32 = cast(a, "float32");
  const b32 = cast(b, "float32");
  const factorSeconds = median(await timeIt(repeats, () => pifaFromLowRank(a32, b32)));
  const referenceSeconds = median(await timeIt(1, () => referenceConversion(a32, b32)));
  const layer = await pifaFromLowRank(a32, b32);
  const source = await native.gemm(a32, b32);
  const factorError = relativeError(await reconstructPifa(layer), source);
  const referenceError = relativeError(
    await reconstructPifa(await referenceConversion(a32, b32)),
    source,
  );
  console.error(
    `PIFA conversion r=${half}: factor space ${factorSeconds.toFixed(2)} s, reference ${referenceSeconds.toFixed(2)} s`,
  );

  const forward: Record<string, Record<string, number>> = {};
  for (const tokens of [1, 64]) {
    const x = cast(await synthTokens(tokens, n), "float32"); // [T, n]
    const reps = Math.max(repeats, 9);
    forward[tokens] = {
      dense: median(await timeIt(reps, () => native.gemm(x, source, { transB: true }))),
      lowRank: median(await timeIt(reps, () => lowRankForward(a32, b32, x))),
      pifa: median(await timeIt(reps, () => pifaForward(layer, x))),
    };
  }
  results.push({
    shape: [m, n],
    rank,
    forward_rank: half,
    svd_seconds: svdSeconds,
    conversion_seconds: { factor_space: factorSeconds, reference: referenceSeconds },
    conversion_speedup: referenceSeconds / factorSeconds,
    conversion_relative_error: { factor_space: factorError, reference: referenceError },
    max_abs_coefficient: layer.maxAbsCoefficient,
    forward_seconds: forward,
    forward_speedup_1: forward[1].lowRank / forward[1].pifa,
    forward_speedup_64: forward[64].lowRank / forward[64].pifa,
  });
}

async function synthTokens(tokens: number, n: number): Promise<Matrix> {
  const data = new Float32Array(tokens * n);
  let state = 7;
  for (let i = 0; i < data.length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    data[i] = state / 2 ** 31 - 1;
  }
  return { rows: tokens, cols: n, data };
}

const info = native.blasInfo();
const report = {
  date: new Date().toISOString(),
  machine: {
    cpu: os.cpus()[0]?.model ?? "unknown",
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    blas: info.config,
    corename: info.corename,
    blasThreads: info.threads,
    node: process.version,
  },
  repeats,
  layers: results,
};

console.log(
  "\nshape         rank  svd gram  svd gesdd  conv factor  conv ref  speedup  fwd64 lr/pifa",
);
for (const r of results) {
  console.log(
    `${r.shape.join("x").padEnd(12)} ${String(r.rank).padStart(5)} ${r.svd_seconds.gram.toFixed(2).padStart(9)} ${r.svd_seconds.gesdd.toFixed(2).padStart(10)} ${r.conversion_seconds.factor_space.toFixed(2).padStart(12)} ${r.conversion_seconds.reference.toFixed(2).padStart(9)} ${r.conversion_speedup.toFixed(2).padStart(8)} ${r.forward_speedup_64.toFixed(2).padStart(14)}`,
  );
}
const out =
  values.json ?? path.join("bench", "results", `numerics-${report.date.slice(0, 10)}.json`);
await mkdir(path.dirname(out), { recursive: true });
await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
console.error(`wrote ${out}`);
