/**
 * Peak memory of the offline CLI against the number of decoder layers.
 * Generates synthetic LLaMA-shaped checkpoints (bench/synth-checkpoint.ts),
 * runs `node bin/pifa.js compress` on each under `/usr/bin/time -v`, and
 * compares the peak RSS with the estimated working set of the largest layer.
 * The baseline is the same command on a tiny checkpoint, measured in the same
 * run: it is the cost of Node, tsx and the loaded OpenBLAS.
 *
 * Usage: npm run bench:memory -- [--layers 1,2,4] [--hidden 4096] [--intermediate 11008]
 *   [--heads 32] [--vocab 1024] [--dtype F16] [--method pifa] [--density 0.5]
 *   [--work DIR] [--keep] [--json PATH]
 * `--keep` leaves the checkpoints in the work directory and reuses them on the next run.
 */

import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import type { CompressionReport } from "../workers/pipeline/report.ts";
import { median } from "./lib.ts";
import { MIB, machineInfo, type TimedRun, timeCommand } from "./process-stats.ts";
import {
  BENCH_WORK_DIR,
  ensureSyntheticCheckpoint,
  LLAMA_7B,
  type LlamaShape,
  llamaTensors,
  type SyntheticDtype,
} from "./synth-checkpoint.ts";

/** Allowance on top of twice the working set: Node, tsx, the addon and OpenBLAS buffers. */
const RUNTIME_ALLOWANCE_BYTES = 300 * MIB;

/**
 * Estimated bytes live at the peak of a data-free `compressLayer` on `W [m, n]`,
 * read off the code, with k = min(m, n). During the Gram product the float32
 * weight (4mn), the addon's float64 widening of it (8mn, freed when syrk
 * returns) and the Gram matrix (8k^2) are alive. During the eigendecomposition
 * the weight, the Gram matrix, the addon's copy of it and the syevd workspace
 * of at least 1 + 6k + 2k^2 doubles are alive. The product with W afterwards
 * widens W in 32 MiB panels and, by the same reading, needs less at ranks up
 * to about k / 2.
 */
export function layerWorkingSetBytes(m: number, n: number): number {
  const k = Math.min(m, n);
  const gramStage = 12 * m * n + 8 * k * k;
  const eighStage = 4 * m * n + 32 * k * k + 48 * k + 8;
  return Math.max(gramStage, eighStage);
}

/** Finds the projection weight of a LLaMA shape with the largest working set. */
export function largestWorkingSet(shape: LlamaShape): { bytes: number; tensor: string } {
  let best = { bytes: 0, tensor: "" };
  for (const tensor of llamaTensors(shape, "F16")) {
    if (tensor.kind !== "projection") continue;
    const [m, n] = tensor.shape as [number, number];
    const bytes = layerWorkingSetBytes(m, n);
    if (bytes > best.bytes) best = { bytes, tensor: `${tensor.name} [${m}, ${n}]` };
  }
  return best;
}

interface CompressRun {
  layers: number;
  tensors: number;
  compressedTensors: number;
  checkpointBytes: number;
  peakRssBytes: number;
  wallSeconds: number;
  cpuSeconds: number;
  /** Median seconds per compressed tensor, by shape `m x n`. */
  medianLayerSeconds: Record<string, number>;
}

async function compressWithTime(
  dir: string,
  out: string,
  method: string,
  density: number,
): Promise<{ run: TimedRun; report: CompressionReport }> {
  await rm(out, { recursive: true, force: true });
  const run = await timeCommand(process.execPath, [
    "bin/pifa.js",
    "compress",
    dir,
    "--out",
    out,
    "--method",
    method,
    "--density",
    String(density),
    "--json",
  ]);
  const report = JSON.parse(
    await readFile(path.join(out, "report.json"), "utf8"),
  ) as CompressionReport;
  await rm(out, { recursive: true, force: true });
  return { run, report };
}

function medianSecondsByShape(report: CompressionReport): Record<string, number> {
  const byShape = new Map<string, number[]>();
  for (const layer of report.layers) {
    const key = layer.shape.join("x");
    byShape.set(key, [...(byShape.get(key) ?? []), layer.seconds]);
  }
  return Object.fromEntries([...byShape].map(([key, samples]) => [key, median(samples)]));
}

function parseCount(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`--${flag} needs positive integers, got ${JSON.stringify(text)}`);
  }
  return value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      layers: { type: "string", default: "1,2,4" },
      hidden: { type: "string", default: String(LLAMA_7B.hiddenSize) },
      intermediate: { type: "string", default: String(LLAMA_7B.intermediateSize) },
      heads: { type: "string", default: String(LLAMA_7B.numAttentionHeads) },
      vocab: { type: "string", default: "1024" },
      dtype: { type: "string", default: "F16" },
      method: { type: "string", default: "pifa" },
      density: { type: "string", default: "0.5" },
      work: { type: "string", default: BENCH_WORK_DIR },
      keep: { type: "boolean", default: false },
      json: { type: "string" },
    },
  });
  if (values.dtype !== "F16" && values.dtype !== "BF16") {
    throw new RangeError(`--dtype must be F16 or BF16, got ${JSON.stringify(values.dtype)}`);
  }
  const dtype: SyntheticDtype = values.dtype;
  const layerCounts = values.layers.split(",").map((text) => parseCount("layers", text));
  const heads = parseCount("heads", values.heads);
  const dims = {
    hiddenSize: parseCount("hidden", values.hidden),
    intermediateSize: parseCount("intermediate", values.intermediate),
    numAttentionHeads: heads,
    numKeyValueHeads: heads,
    vocabSize: parseCount("vocab", values.vocab),
  };
  const density = Number(values.density);
  const work = values.work;
  await mkdir(work, { recursive: true });
  const machine = machineInfo();

  // Baseline: the same command on a checkpoint whose layers take a few megabytes.
  const tiny = await ensureSyntheticCheckpoint(
    work,
    {
      hiddenSize: 64,
      intermediateSize: 172,
      numAttentionHeads: 4,
      numKeyValueHeads: 4,
      vocabSize: 128,
      numHiddenLayers: 1,
    },
    dtype,
  );
  const baseline = await compressWithTime(tiny.dir, path.join(work, "out"), values.method, density);
  console.error(`baseline peak RSS ${(baseline.run.peakRssBytes / MIB).toFixed(0)} MiB`);

  const runs: CompressRun[] = [];
  for (const layers of layerCounts) {
    const shape: LlamaShape = { ...dims, numHiddenLayers: layers };
    const checkpoint = await ensureSyntheticCheckpoint(work, shape, dtype);
    console.error(`compressing ${checkpoint.dir}`);
    const { run, report } = await compressWithTime(
      checkpoint.dir,
      path.join(work, "out"),
      values.method,
      density,
    );
    runs.push({
      layers,
      tensors: llamaTensors(shape, dtype).length,
      compressedTensors: report.layers.length,
      checkpointBytes: checkpoint.bytes,
      peakRssBytes: run.peakRssBytes,
      wallSeconds: run.wallSeconds,
      cpuSeconds: run.userSeconds + run.systemSeconds,
      medianLayerSeconds: medianSecondsByShape(report),
    });
    console.error(
      `${layers} layers: peak RSS ${(run.peakRssBytes / MIB).toFixed(0)} MiB, ${run.wallSeconds.toFixed(1)} s`,
    );
    if (!values.keep) await rm(checkpoint.dir, { recursive: true, force: true });
  }
  if (!values.keep) await rm(tiny.dir, { recursive: true, force: true });

  const largest = largestWorkingSet({ ...dims, numHiddenLayers: 1 });
  const limit = 2 * largest.bytes + RUNTIME_ALLOWANCE_BYTES;
  const first = runs[0];
  console.log(
    `\nlargest layer ${largest.tensor}: estimated working set ${(largest.bytes / MIB).toFixed(0)} MiB, target peak < ${(limit / MIB).toFixed(0)} MiB; baseline ${(baseline.run.peakRssBytes / MIB).toFixed(0)} MiB`,
  );
  console.log("layers  tensors  checkpoint MiB  peak RSS MiB  vs first  vs target  wall s  cpu s");
  for (const run of runs) {
    console.log(
      `${String(run.layers).padStart(6)} ${String(run.tensors).padStart(8)} ${(run.checkpointBytes / MIB).toFixed(0).padStart(15)} ${(run.peakRssBytes / MIB).toFixed(0).padStart(13)} ${(run.peakRssBytes / first.peakRssBytes).toFixed(3).padStart(9)} ${(run.peakRssBytes / limit).toFixed(3).padStart(10)} ${run.wallSeconds.toFixed(1).padStart(7)} ${run.cpuSeconds.toFixed(1).padStart(6)}`,
    );
  }

  const date = new Date().toISOString();
  const result = {
    date,
    machine: { ...machine, loadAverageAfter: os.loadavg() },
    dtype,
    method: values.method,
    density,
    dims,
    baselinePeakRssBytes: baseline.run.peakRssBytes,
    largestLayer: largest,
    targetPeakRssBytes: limit,
    runs,
  };
  const out = values.json ?? path.join("bench", "results", `memory-${date.slice(0, 10)}.json`);
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
  console.error(`wrote ${out}`);
}

await main();
