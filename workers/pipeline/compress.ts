/**
 * Compression of a whole checkpoint into an artifact directory
 * (safetensors, config.json, report.json). Data-free methods read one tensor
 * at a time and compress each targeted layer on its own; data-aware methods
 * run the model over calibration sequences layer by layer. Either way the
 * artifact streams to disk as layers finish, and peak memory follows one
 * layer, not the model.
 */

import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { type Checkpoint, openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import { parseModelConfig } from "../../src/checkpoint/config.ts";
import { assertFinite } from "../../src/checkpoint/finite.ts";
import { createSafetensorsWriter, type SafetensorsWriter } from "../../src/checkpoint/writer.ts";
import { CompressionError } from "../../src/compression/errors.ts";
import { type CompressionOptions, isDataAware } from "../../src/compression/options.ts";
import {
  checkModelTensors,
  evaluatePerplexity,
  type ModelSpec,
  modelSpecFromConfig,
} from "../../src/model/index.ts";
import { compressWithCalibration, decoderTargets, orderByLayer } from "./data-aware.ts";
import { compressLayer, type LayerReport } from "./layer.ts";
import type { LayerStore } from "./layer-store.ts";
import { type CompressionPlan, planCompression, tensorBytes } from "./plan.ts";
import {
  buildReport,
  type CompressionReport,
  type EvaluationReport,
  REPORT_FILE_NAME,
} from "./report.ts";

export interface Progress {
  stage: "compressing" | "evaluating" | "writing";
  layersDone: number;
  layersTotal: number;
  /** Name of the weight that just finished. */
  layer?: string;
}

export interface CompressInput {
  checkpoint: Checkpoint;
  /** Bytes of `config.json`: copied into the artifact, and required by data-aware methods and evaluation. */
  config?: string | Uint8Array;
  options: CompressionOptions;
  /** Calibration token sequences, required by svd-llm, m and mpifa. */
  calibration?: readonly Int32Array[];
  /** Held-out token sequences; when given, the report compares perplexities. */
  evaluation?: readonly Int32Array[];
  /** Local directory that receives the artifact files; created if missing. */
  outDir: string;
  /** Awaited after every layer (data-free) or group of linears (data-aware). */
  onProgress?: (progress: Progress) => void | Promise<void>;
  /** Checked between layers; an abort stops the job and removes partial files. */
  signal?: AbortSignal;
  logger?: Logger;
  /** Where finished layers are saved before progress reports them, and found again on a retry. */
  layerStore?: LayerStore;
  /** True when layer-group child jobs already saved every layer, so loading them is no resume. */
  layersPrecomputed?: boolean;
}

export interface CompressResult {
  report: CompressionReport;
  /** Artifact file names inside `outDir`. */
  files: string[];
}

export interface ValidationContext {
  /** Bytes of `config.json`, when the job has one. */
  config?: string | Uint8Array;
  /** Whether calibration data came with the job. */
  hasCalibration?: boolean;
  /** Whether evaluation data came with the job. */
  hasEvaluation?: boolean;
}

/** Model spec from config.json; throws MISSING_INPUT naming `why` when there is none. */
export function specFromConfig(config: string | Uint8Array | undefined, why: string): ModelSpec {
  if (config === undefined) {
    throw new CompressionError(
      "MISSING_INPUT",
      `config.json is required ${why}: send it as the config part`,
      "config",
    );
  }
  return modelSpecFromConfig(parseModelConfig(config));
}

/**
 * Checks that a job can run: the checkpoint's header yields a non-empty
 * plan and, for data-aware methods and evaluation, config.json describes a
 * supported architecture whose tensors are all present. Cheap: reads no
 * tensor data.
 */
export function validateForCompression(
  checkpoint: Checkpoint,
  options: CompressionOptions,
  context: ValidationContext = {},
): CompressionPlan {
  const plan = planCompression(checkpoint, options);
  if (isDataAware(options.method)) {
    if (!context.hasCalibration) {
      throw new CompressionError(
        "MISSING_INPUT",
        `method "${options.method}" fits layers to calibration activations: send token-id JSON as the calibration part (--calibration FILE on the CLI)`,
        "calibration",
      );
    }
    const spec = specFromConfig(context.config, `by method "${options.method}"`);
    checkModelTensors(checkpoint, spec);
    decoderTargets(plan);
  }
  if (context.hasEvaluation) {
    checkModelTensors(checkpoint, specFromConfig(context.config, "to evaluate perplexity"));
  }
  return plan;
}

async function compressDataFree(
  input: CompressInput,
  plan: CompressionPlan,
  writer: SafetensorsWriter,
): Promise<LayerReport[]> {
  const { checkpoint, signal, logger } = input;
  const reports: LayerReport[] = [];
  for (const step of plan.steps) {
    if (signal?.aborted)
      throw new CompressionError("CANCELLED", "compression cancelled between layers");
    if (step.kind === "copy") {
      await writer.writeTensor(step.source.name, await checkpoint.readTensorBytes(step.source));
      continue;
    }
    const { layer } = step;
    let encoded = await input.layerStore?.load(layer.source.name);
    if (encoded) {
      const from = input.layersPrecomputed ? "its layer group" : "an earlier attempt";
      logger?.debug({ layer: layer.source.name }, `layer loaded from ${from}`);
    } else {
      const data = await checkpoint.readTensorFloat32(layer.source); // [m, n]
      assertFinite(layer.source.name, data, layer.source.shape);
      encoded = await compressLayer(
        layer.source.name,
        { rows: layer.m, cols: layer.n, data },
        layer.rank,
        layer.representation,
        layer.outputDtype,
      );
      await input.layerStore?.save(layer.source.name, encoded);
    }
    const { tensors, report } = encoded;
    for (const tensor of tensors) await writer.writeTensor(tensor.name, tensor.bytes);
    reports.push(report);
    logger?.debug(
      { layer: report.name, rank: report.rank, seconds: report.seconds },
      "layer compressed",
    );
    await input.onProgress?.({
      stage: "compressing",
      layersDone: reports.length,
      layersTotal: plan.layers.length,
      layer: report.name,
    });
  }
  return reports;
}

/** Perplexity of the source and of the written artifact on the same sequences. */
async function evaluate(
  input: CompressInput,
  spec: ModelSpec,
  sequences: readonly Int32Array[],
): Promise<EvaluationReport> {
  const original = await evaluatePerplexity(input.checkpoint, spec, sequences);
  const artifact = await openCheckpoint(input.outDir);
  try {
    const compressed = await evaluatePerplexity(artifact, spec, sequences);
    return {
      sequences: original.sequences,
      tokens: original.tokens,
      original: { perplexity: original.perplexity, mean_nll: original.meanNll },
      compressed: { perplexity: compressed.perplexity, mean_nll: compressed.meanNll },
    };
  } finally {
    await artifact.close();
  }
}

export async function compressCheckpoint(input: CompressInput): Promise<CompressResult> {
  const { checkpoint, options, outDir } = input;
  const started = performance.now();
  const dataAware = isDataAware(options.method);
  const plan = validateForCompression(checkpoint, options, {
    config: input.config,
    hasCalibration: (input.calibration?.length ?? 0) > 0,
    hasEvaluation: (input.evaluation?.length ?? 0) > 0,
  });
  const steps = dataAware ? orderByLayer(plan.steps) : plan.steps;
  const outputs = steps.flatMap((step) =>
    step.kind === "copy"
      ? [{ name: step.source.name, dtype: step.source.dtype, shape: [...step.source.shape] }]
      : step.layer.outputs,
  );
  const layersTotal = plan.layers.length;
  await mkdir(outDir, { recursive: true });
  const writer = await createSafetensorsWriter({
    directory: outDir,
    tensors: outputs,
    metadata: plan.metadata,
    maxShardBytes: options.shardBytes,
  });

  let layers: LayerReport[];
  let written: { files: readonly string[] };
  try {
    if (dataAware) {
      let done = 0;
      layers = await compressWithCalibration({
        checkpoint,
        spec: specFromConfig(input.config, `by method "${options.method}"`),
        options,
        plan,
        calibration: input.calibration ?? [],
        writer,
        signal: input.signal,
        logger: input.logger,
        layerStore: input.layerStore,
        onGroup: async (group) => {
          // One update per layer, as data-free jobs report, although a
          // group's layers finish together.
          for (const layer of group) {
            done += 1;
            await input.onProgress?.({
              stage: "compressing",
              layersDone: done,
              layersTotal,
              layer: layer.name,
            });
          }
        },
      });
    } else {
      layers = await compressDataFree(input, { ...plan, steps }, writer);
    }
    await input.onProgress?.({ stage: "writing", layersDone: layersTotal, layersTotal });
    written = await writer.close();
  } catch (error) {
    await writer.abort();
    throw error;
  }

  const files = [...written.files];
  if (input.config !== undefined) {
    await writeFile(path.join(outDir, "config.json"), input.config);
    files.push("config.json");
  }
  let evaluation: EvaluationReport | undefined;
  if (input.evaluation && input.evaluation.length > 0) {
    await input.onProgress?.({ stage: "evaluating", layersDone: layersTotal, layersTotal });
    evaluation = await evaluate(
      input,
      specFromConfig(input.config, "to evaluate perplexity"),
      input.evaluation,
    );
  }
  const report = buildReport({
    options,
    layers,
    bytesBefore: checkpoint.tensors.reduce((sum, t) => sum + t.byteLength, 0),
    bytesAfter: outputs.reduce((sum, t) => sum + tensorBytes(t), 0),
    seconds: (performance.now() - started) / 1000,
    calibration: dataAware
      ? {
          sequences: input.calibration?.length ?? 0,
          tokens: (input.calibration ?? []).reduce((sum, s) => sum + s.length, 0),
        }
      : undefined,
    evaluation,
  });
  await writeFile(path.join(outDir, REPORT_FILE_NAME), `${JSON.stringify(report, null, 2)}\n`);
  files.push(REPORT_FILE_NAME);
  return { report, files };
}
