/**
 * Data-free compression of a whole checkpoint: reads one tensor at a time,
 * compresses the targeted linear layers, copies everything else byte for
 * byte, and streams the artifact (safetensors, config.json, report.json)
 * into a local directory. Peak memory is one layer's working set.
 */

import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import type { Checkpoint } from "../../src/checkpoint/checkpoint.ts";
import { assertFinite } from "../../src/checkpoint/finite.ts";
import { createSafetensorsWriter } from "../../src/checkpoint/writer.ts";
import { CompressionError } from "../../src/compression/errors.ts";
import { type CompressionOptions, isDataAware } from "../../src/compression/options.ts";
import { compressLayer, type LayerReport } from "./layer.ts";
import { type CompressionPlan, planCompression, tensorBytes } from "./plan.ts";
import { buildReport, type CompressionReport, REPORT_FILE_NAME } from "./report.ts";

export interface Progress {
  stage: "compressing" | "writing" | "done";
  layersDone: number;
  layersTotal: number;
  /** Name of the weight that just finished. */
  layer?: string;
}

export interface CompressInput {
  checkpoint: Checkpoint;
  /** Bytes of `config.json`, copied into the artifact when given. */
  config?: string | Uint8Array;
  options: CompressionOptions;
  /** Local directory that receives the artifact files; created if missing. */
  outDir: string;
  /** Awaited after every layer, so a slow progress sink slows the job rather than queueing. */
  onProgress?: (progress: Progress) => void | Promise<void>;
  /** Checked between layers; an abort stops the job and removes partial files. */
  signal?: AbortSignal;
  logger?: Logger;
}

export interface CompressResult {
  report: CompressionReport;
  /** Artifact file names inside `outDir`. */
  files: string[];
}

/**
 * Checks that a job can run: options fit the pipeline and the checkpoint's
 * header yields a non-empty plan. Cheap: reads no tensor data.
 */
export function validateForCompression(
  checkpoint: Checkpoint,
  options: CompressionOptions,
): CompressionPlan {
  if (isDataAware(options.method)) {
    throw new CompressionError(
      "METHOD_NOT_AVAILABLE",
      `method "${options.method}" needs calibration activations, which this pipeline does not compute yet: use "pifa" or "svd"`,
      "options.method",
    );
  }
  return planCompression(checkpoint, options);
}

export async function compressCheckpoint(input: CompressInput): Promise<CompressResult> {
  const { checkpoint, options, outDir, signal, logger } = input;
  const started = performance.now();
  const plan = validateForCompression(checkpoint, options);
  const layersTotal = plan.layers.length;
  await mkdir(outDir, { recursive: true });
  const writer = await createSafetensorsWriter({
    directory: outDir,
    tensors: plan.outputs,
    metadata: plan.metadata,
    maxShardBytes: options.shardBytes,
  });

  const layerReports: LayerReport[] = [];
  try {
    for (const step of plan.steps) {
      if (signal?.aborted)
        throw new CompressionError("CANCELLED", "compression cancelled between layers");
      if (step.kind === "copy") {
        await writer.writeTensor(step.source.name, await checkpoint.readTensorBytes(step.source));
        continue;
      }
      const { layer } = step;
      const data = await checkpoint.readTensorFloat32(layer.source); // [m, n]
      assertFinite(layer.source.name, data, layer.source.shape);
      const { tensors, report } = await compressLayer(
        layer.source.name,
        { rows: layer.m, cols: layer.n, data },
        layer.rank,
        layer.representation,
        layer.outputDtype,
      );
      for (const tensor of tensors) await writer.writeTensor(tensor.name, tensor.bytes);
      layerReports.push(report);
      logger?.debug(
        { layer: report.name, rank: report.rank, seconds: report.seconds },
        "layer compressed",
      );
      await input.onProgress?.({
        stage: "compressing",
        layersDone: layerReports.length,
        layersTotal,
        layer: report.name,
      });
    }
    await input.onProgress?.({ stage: "writing", layersDone: layersTotal, layersTotal });
    const written = await writer.close();

    const report = buildReport({
      options,
      layers: layerReports,
      bytesBefore: checkpoint.tensors.reduce((sum, t) => sum + t.byteLength, 0),
      bytesAfter: plan.outputs.reduce((sum, t) => sum + tensorBytes(t), 0),
      seconds: (performance.now() - started) / 1000,
    });
    const files = [...written.files];
    if (input.config !== undefined) {
      await writeFile(path.join(outDir, "config.json"), input.config);
      files.push("config.json");
    }
    await writeFile(path.join(outDir, REPORT_FILE_NAME), `${JSON.stringify(report, null, 2)}\n`);
    files.push(REPORT_FILE_NAME);
    await input.onProgress?.({ stage: "done", layersDone: layersTotal, layersTotal });
    return { report, files };
  } catch (error) {
    await writer.abort();
    throw error;
  }
}
