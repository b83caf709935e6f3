/**
 * The compression plan: which tensors are compressed, to which rank, and the
 * full list of output tensors in write order. Everything here is known from
 * the header alone, so the API can validate a job before queueing it and the
 * streaming writer can emit the output header before any math runs.
 */

import type { Checkpoint, CheckpointTensor } from "../../src/checkpoint/checkpoint.ts";
import { dtypeSize, type FloatDtype, isFloatDtype } from "../../src/checkpoint/dtypes.ts";
import { selectTargets } from "../../src/checkpoint/targets.ts";
import { type CompressionOptions, representationOf } from "../../src/compression/options.ts";
import { paramsFor, type Representation, rankFor } from "../../src/numerics/rank.ts";
import { plannedTensors } from "./layer.ts";

/** Artifact format version written to `pifa.format_version`. */
export const ARTIFACT_FORMAT_VERSION = "1";

export interface PlannedTensor {
  name: string;
  dtype: string;
  shape: number[];
}

export interface LayerPlan {
  source: CheckpointTensor;
  m: number;
  n: number;
  rank: number;
  representation: Representation;
  outputDtype: FloatDtype;
  outputs: PlannedTensor[];
}

/** One step of the write order: copy a tensor as it is, or compress a layer. */
export type PlanStep =
  | { kind: "copy"; source: CheckpointTensor }
  | { kind: "compress"; layer: LayerPlan };

export interface CompressionPlan {
  steps: PlanStep[];
  layers: LayerPlan[];
  /** Output tensors in write order. */
  outputs: PlannedTensor[];
  metadata: Record<string, string>;
  paramsBefore: number;
  paramsAfter: number;
}

const OUTPUT_DTYPE: Record<string, FloatDtype | undefined> = {
  f32: "F32",
  f16: "F16",
  bf16: "BF16",
};

function outputDtypeFor(source: CheckpointTensor, option: CompressionOptions["dtype"]): FloatDtype {
  const chosen = OUTPUT_DTYPE[option];
  if (chosen) return chosen;
  // Target selection admits only float tensors, so "same" always maps to one.
  if (!isFloatDtype(source.dtype)) {
    throw new TypeError(`tensor ${source.name} has dtype ${source.dtype}, not F32, F16 or BF16`);
  }
  return source.dtype;
}

/** Source `__metadata__` of every shard, merged, plus the product's `pifa.` keys. */
function artifactMetadata(
  checkpoint: Checkpoint,
  options: CompressionOptions,
): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const shard of checkpoint.shards.values()) Object.assign(metadata, shard.metadata);
  metadata["pifa.format_version"] = ARTIFACT_FORMAT_VERSION;
  metadata["pifa.method"] = options.method;
  metadata["pifa.density"] = String(options.density);
  if (options.rankMultiple !== undefined) {
    metadata["pifa.rank_multiple"] = String(options.rankMultiple);
  }
  return metadata;
}

/** Builds the plan from the checkpoint's header; throws the target-selection errors. */
export function planCompression(
  checkpoint: Checkpoint,
  options: CompressionOptions,
): CompressionPlan {
  const targetNames = new Set(
    selectTargets(checkpoint.tensors, {
      include: options.targets,
      exclude: options.exclude,
      metadata: artifactMetadata(checkpoint, options),
    }).map((tensor) => tensor.name),
  );
  const representation = representationOf(options.method);
  const steps: PlanStep[] = [];
  const layers: LayerPlan[] = [];
  const outputs: PlannedTensor[] = [];
  let paramsBefore = 0;
  let paramsAfter = 0;

  for (const source of checkpoint.tensors) {
    if (!targetNames.has(source.name)) {
      steps.push({ kind: "copy", source });
      outputs.push({ name: source.name, dtype: source.dtype, shape: [...source.shape] });
      continue;
    }
    const [m, n] = source.shape;
    const rank = rankFor(representation, m, n, options.density, { multiple: options.rankMultiple });
    const outputDtype = outputDtypeFor(source, options.dtype);
    const layerOutputs = plannedTensors(source.name, m, n, rank, representation, outputDtype);
    const layer: LayerPlan = {
      source,
      m,
      n,
      rank,
      representation,
      outputDtype,
      outputs: layerOutputs,
    };
    steps.push({ kind: "compress", layer });
    layers.push(layer);
    outputs.push(...layerOutputs);
    paramsBefore += m * n;
    paramsAfter += paramsFor(representation, m, n, rank);
  }
  return {
    steps,
    layers,
    outputs,
    metadata: artifactMetadata(checkpoint, options),
    paramsBefore,
    paramsAfter,
  };
}

export function tensorBytes(tensor: PlannedTensor): number {
  let count = 1;
  for (const dim of tensor.shape) count *= dim;
  return count * dtypeSize(tensor.dtype as Parameters<typeof dtypeSize>[0]);
}
