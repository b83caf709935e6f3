/**
 * Whole per-layer time of the pipeline against the reference recipe of the
 * PIFA authors, on the same OpenBLAS, for LLaMA-7B-shaped layers stored in F16:
 *
 *   ours:      compressLayer as the pipeline runs it: truncated SVD through
 *              the float64 Gram matrix, PIFA in factor space, F16 encoding
 *              and the relative error of what is stored;
 *   reference: full thin SVD (sgesdd) truncated to the rank, W' = A B,
 *              pivoted QR (sgeqp3) of W'^T, coefficients by least squares
 *              (sgelsd), then the same encoding and error measurement.
 *
 * It then times each BLAS/LAPACK call of our path on its own, turns the
 * operation counts into CPU FLOP rates, and estimates the same work on one
 * H100-class GPU (bench/gpu-estimate.ts). Both layer paths store the same
 * tensors and report the same error, so the ratio compares equal work.
 *
 * Usage: npm run bench:layer -- [--shapes 4096x4096,11008x4096] [--repeats 3]
 *   [--reference-repeats 2] [--density 0.5] [--json PATH]
 */

import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { decodeFloat32, encodeFloat32 } from "../src/checkpoint/float-codec.ts";
import {
  cast,
  type Matrix,
  type Matrix32,
  type Matrix64,
  selectRows,
  transpose,
} from "../src/linalg/matrix.ts";
import * as native from "../src/native/index.ts";
import { type PifaLayer, pifaFromLowRank } from "../src/numerics/pifa.ts";
import { pifaRank } from "../src/numerics/rank.ts";
import { truncatedSvd } from "../src/numerics/truncated-svd.ts";
import { encodeLayer } from "../workers/pipeline/layer.ts";
import { pifaRelativeError } from "../workers/pipeline/stored-error.ts";
import {
  ASSUMED_EFFICIENCY,
  estimatedGpuSeconds,
  H100_SXM,
  pifaLayerOperations,
  transferSeconds,
} from "./gpu-estimate.ts";
import { median, synthLayer } from "./lib.ts";
import { machineInfo } from "./process-stats.ts";
import { spectrumScale } from "./synth-checkpoint.ts";

const { values } = parseArgs({
  options: {
    shapes: { type: "string", default: "4096x4096,11008x4096" },
    repeats: { type: "string", default: "3" },
    "reference-repeats": { type: "string", default: "2" },
    density: { type: "string", default: "0.5" },
    json: { type: "string" },
  },
});
const repeats = Number(values.repeats);
const referenceRepeats = Number(values["reference-repeats"]);
const density = Number(values.density);
const shapes = values.shapes.split(",").map((text) => {
  const dims = text.split("x").map(Number);
  if (dims.length !== 2 || !dims.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new RangeError(`invalid shape ${JSON.stringify(text)}: expected MxN, e.g. 4096x4096`);
  }
  return dims as [number, number];
});

/** Builds a layer with the power-law spectrum at RMS 0.02, rounded through F16 like a stored checkpoint. */
async function storedLayer(m: number, n: number): Promise<Matrix32> {
  const w = await synthLayer(m, n, 1.0, 42); // [m, n]
  const scale = spectrumScale(m, n, 1.0, 0.02);
  for (let i = 0; i < w.data.length; i++) w.data[i] *= scale;
  return { rows: m, cols: n, data: decodeFloat32(encodeFloat32(w.data, "F16"), "F16") };
}

/** Converts as the authors do: form W' = A B, pivot rows by geqp3 on W'^T, coefficients by least squares. */
async function referenceConversion(a: Matrix32, b: Matrix32): Promise<PifaLayer> {
  const r = a.cols;
  const w = await native.gemm(a, b); // [m, n]
  const { pivots: order } = await native.qrPivoted(transpose(w)); // W'^T [n, m]
  const pivots = Int32Array.from(order.subarray(0, r)).sort();
  const rest = Int32Array.from(order.subarray(r)).sort();
  // W'[rest] = C W'[P]  <=>  W'[P]^T C^T = W'[rest]^T
  const pivotRows = selectRows(w, pivots); // [r, n]
  const restRows = selectRows(w, rest); // [m - r, n]
  const ct = await native.leastSquares(transpose(pivotRows), transpose(restRows)); // [r, m - r]
  return {
    pivotRows,
    coefficients: transpose(ct), // [m - r, r]
    pivots,
    rest,
    rows: w.rows,
    maxAbsCoefficient: Number.NaN,
  };
}

/** Rounds a PIFA layer through F16 and returns its error, as workers/pipeline/layer.ts does. */
async function storedError(w: Matrix32, layer: PifaLayer): Promise<number> {
  const round = (m: Matrix): Matrix32 => ({
    rows: m.rows,
    cols: m.cols,
    data: decodeFloat32(encodeFloat32(m.data as Float32Array, "F16"), "F16"),
  });
  return pifaRelativeError(w, {
    pivotRows: round(layer.pivotRows),
    coefficients: round(layer.coefficients),
    pivots: layer.pivots,
    rest: layer.rest,
  });
}

interface LayerRun {
  /** Wall-clock seconds of the whole layer. */
  seconds: number;
  /** Wall-clock seconds of the truncated SVD alone. */
  svdSeconds: number;
  /** CPU seconds of this process over the layer, all threads. */
  processCpuSeconds: number;
  relativeError: number;
}

/** Runs `steps` and returns wall-clock and CPU seconds around it. */
async function measured<T>(steps: () => Promise<T>) {
  const cpu = process.cpuUsage();
  const started = performance.now();
  const result = await steps();
  const used = process.cpuUsage(cpu);
  return {
    result,
    seconds: (performance.now() - started) / 1000,
    processCpuSeconds: (used.user + used.system) / 1e6,
  };
}

/** Runs our path, the two steps of compressLayer, and times the SVD apart. */
async function oursLayer(w: Matrix32, rank: number): Promise<LayerRun> {
  let svdSeconds = 0;
  const run = await measured(async () => {
    const started = performance.now();
    const pair = await truncatedSvd(w, rank, { dtype: "float32" });
    svdSeconds = (performance.now() - started) / 1000;
    const a = pair.a as Matrix32;
    const b = pair.b as Matrix32;
    return encodeLayer("model.layers.0.bench.weight", w, a, b, "pifa", "F16", started);
  });
  return { ...run, svdSeconds, relativeError: run.result.report.relative_error };
}

async function referenceLayer(w: Matrix32, rank: number): Promise<LayerRun> {
  let svdSeconds = 0;
  const run = await measured(async () => {
    const started = performance.now();
    const pair = await truncatedSvd(w, rank, { route: "gesdd", dtype: "float32" });
    svdSeconds = (performance.now() - started) / 1000;
    const layer = await referenceConversion(pair.a as Matrix32, pair.b as Matrix32);
    return storedError(w, layer);
  });
  return { ...run, svdSeconds, relativeError: run.result };
}

/** Takes the medians over the runs of one path. */
function summarize(runs: LayerRun[]): LayerRun & { runs: number } {
  return {
    seconds: median(runs.map((run) => run.seconds)),
    svdSeconds: median(runs.map((run) => run.svdSeconds)),
    processCpuSeconds: median(runs.map((run) => run.processCpuSeconds)),
    relativeError: runs[0].relativeError,
    runs: runs.length,
  };
}

/**
 * Times each BLAS/LAPACK call of our layer path in the order and on the
 * shapes of truncated-svd.ts (Gram route) and pifa.ts, one median per call.
 */
async function timeOperations(w: Matrix32, rank: number): Promise<number[]> {
  const { rows: m, cols: n } = w;
  const w64 = cast(w, "float64");
  const tall = m >= n;
  const seconds: number[] = [];
  const timed = async <T>(fn: () => Promise<T>): Promise<T> => {
    const samples: number[] = [];
    let result: T | undefined;
    for (let i = 0; i < repeats; i++) {
      const started = performance.now();
      result = await fn();
      samples.push((performance.now() - started) / 1000);
    }
    seconds.push(median(samples));
    return result as T;
  };

  const gram = await timed(() => native.syrk(w64, { trans: tall })); // [k, k]
  const { values: eigenvalues, vectors } = await timed(() => native.eigh(gram));
  const k = gram.rows;
  const grow = new Float64Array(k * rank); // [k, r], columns * s^(1/2)
  const shrink = new Float64Array(k * rank); // [k, r], columns * s^(-1/2)
  for (let j = 0; j < rank; j++) {
    const root = Math.sqrt(Math.sqrt(Math.max(0, eigenvalues[k - 1 - j])));
    for (let i = 0; i < k; i++) {
      const v = vectors.data[i * k + k - 1 - j];
      grow[i * rank + j] = v * root;
      shrink[i * rank + j] = root > 0 ? v / root : 0;
    }
  }
  const growM: Matrix64 = { rows: k, cols: rank, data: grow };
  const shrinkM: Matrix64 = { rows: k, cols: rank, data: shrink };
  let a64: Matrix64;
  let b64: Matrix64;
  if (tall) {
    a64 = await timed(() => native.gemm(w64, shrinkM)); // [m, r]
    b64 = transpose(growM); // [r, n]
  } else {
    b64 = await timed(() => native.gemm(shrinkM, w64, { transA: true })); // [r, n]
    a64 = growM; // [m, r]
  }
  const a = cast(a64, "float32");
  const b = cast(b64, "float32");

  const bt = transpose(b); // [n, r]
  const { r: rb } = await timed(() => native.qr(bt, { wantQ: false })); // [r, r]
  const mFactor = await timed(() => native.gemm(rb, a, { transB: true })); // [r, m]
  const { r: rFull } = await timed(() => native.qrPivoted(mFactor)); // [r, m]
  const rest = m - rank;
  const r11 = new Float32Array(rank * rank); // [r, r]
  const r12 = new Float32Array(rank * rest); // [r, m - r]
  for (let i = 0; i < rank; i++) {
    r11.set(rFull.data.subarray(i * m, i * m + rank), i * rank);
    r12.set(rFull.data.subarray(i * m + rank, (i + 1) * m), i * rest);
  }
  await timed(() =>
    native.trsm(
      { rows: rank, cols: rank, data: r11 },
      { rows: rank, cols: rest, data: r12 },
      { side: "left", lower: false },
    ),
  );
  const layer = await pifaFromLowRank(a, b);
  const pivotA = selectRows(a, layer.pivots); // [r, r]
  await timed(() => native.gemm(pivotA, b)); // [r, n]
  await timed(() => native.gemm(layer.coefficients, layer.pivotRows)); // [m - r, n]
  return seconds;
}

const machine = machineInfo();
const results = [];
for (const [m, n] of shapes) {
  console.error(`\n== layer [${m}, ${n}] ==`);
  const w = await storedLayer(m, n);
  const rank = pifaRank(m, n, density);

  // Interleaved, so that load from other processes falls on both paths alike.
  const oursRuns: LayerRun[] = [];
  const referenceRuns: LayerRun[] = [];
  for (let i = 0; i < Math.max(repeats, referenceRepeats); i++) {
    if (i < repeats) oursRuns.push(await oursLayer(w, rank));
    if (i < referenceRepeats) referenceRuns.push(await referenceLayer(w, rank));
  }
  const ours = summarize(oursRuns);
  const reference = summarize(referenceRuns);
  console.error(
    `ours: ${ours.seconds.toFixed(2)} s (SVD ${ours.svdSeconds.toFixed(2)} s); reference: ${reference.seconds.toFixed(2)} s (SVD ${reference.svdSeconds.toFixed(2)} s)`,
  );

  const operationSeconds = await timeOperations(w, rank);
  const operations = pifaLayerOperations(m, n, rank).map((operation, i) => ({
    ...operation,
    cpuSeconds: operationSeconds[i],
    cpuGflops: operation.flops / operationSeconds[i] / 1e9,
    gpuSeconds: estimatedGpuSeconds(operation),
  }));
  const nativeSeconds = operationSeconds.reduce((sum, s) => sum + s, 0);
  // F16 weight in, stored tensors (about half the weight at density 0.5) out.
  const transfer = transferSeconds(2 * m * n) + transferSeconds(2 * m * n * density);
  results.push({
    shape: [m, n],
    rank,
    ours,
    reference,
    speedup: reference.seconds / ours.seconds,
    cpuSpeedup: reference.processCpuSeconds / ours.processCpuSeconds,
    operations,
    nativeSeconds,
    /** Our whole-layer time outside the timed BLAS/LAPACK calls: JavaScript loops and copies. */
    hostSeconds: Math.max(0, ours.seconds - nativeSeconds),
    gpuEstimate: {
      computeSeconds: operations.reduce((sum, op) => sum + op.gpuSeconds, 0),
      transferSeconds: transfer,
    },
  });
}

const date = new Date().toISOString();
console.log("\nshape         rank  ours s  reference s  speedup  CPU-s speedup  ours err  ref err");
for (const r of results) {
  console.log(
    `${r.shape.join("x").padEnd(12)} ${String(r.rank).padStart(5)} ${r.ours.seconds.toFixed(2).padStart(7)} ${r.reference.seconds.toFixed(2).padStart(12)} ${r.speedup.toFixed(2).padStart(8)} ${r.cpuSpeedup.toFixed(2).padStart(14)} ${r.ours.relativeError.toExponential(2).padStart(9)} ${r.reference.relativeError.toExponential(2).padStart(8)}`,
  );
}
for (const r of results) {
  console.log(
    `\n${r.shape.join("x")}: routine, GFLOP, CPU s, CPU GFLOP/s, GPU estimate ms (${H100_SXM.name}, ${ASSUMED_EFFICIENCY * 100}% of roofline)`,
  );
  for (const op of r.operations) {
    console.log(
      `  ${op.routine.padEnd(7)} ${(op.flops / 1e9).toFixed(1).padStart(8)} ${op.cpuSeconds.toFixed(3).padStart(7)} ${op.cpuGflops.toFixed(1).padStart(8)} ${(op.gpuSeconds * 1e3).toFixed(2).padStart(8)}  ${op.step}`,
    );
  }
  console.log(
    `  host (JavaScript) ${r.hostSeconds.toFixed(2)} s; GPU estimate ${(r.gpuEstimate.computeSeconds * 1e3).toFixed(1)} ms compute + ${(r.gpuEstimate.transferSeconds * 1e3).toFixed(1)} ms transfer`,
  );
}

const report = {
  date,
  machine: { ...machine, loadAverageAfter: os.loadavg() },
  repeats,
  referenceRepeats,
  density,
  gpu: { model: H100_SXM, assumedEfficiency: ASSUMED_EFFICIENCY },
  layers: results,
};
const out = values.json ?? path.join("bench", "results", `layer-${date.slice(0, 10)}.json`);
await mkdir(path.dirname(out), { recursive: true });
await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
console.error(`wrote ${out}`);
