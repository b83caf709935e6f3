/**
 * Compression of one layer group of a fanned-out data-free job. Each finished layer's encoded
 * tensors go to the job's layer store, where the parent job's `compressCheckpoint` run later
 * loads them instead of computing them, so the artifact is the same as a single-worker run's.
 */

import type { Logger } from "pino";
import type { Checkpoint } from "../src/checkpoint/checkpoint.ts";
import { assertFinite } from "../src/checkpoint/finite.ts";
import { CompressionError } from "../src/compression/errors.ts";
import type { CompressionOptions } from "../src/compression/options.ts";
import { compressLayer } from "./pipeline/layer.ts";
import type { LayerStore } from "./pipeline/layer-store.ts";
import { planCompression } from "./pipeline/plan.ts";

export interface LayerGroupInput {
  checkpoint: Checkpoint;
  options: CompressionOptions;
  /** First index into the plan's compressed layers. */
  first: number;
  /** Index one past the group's last layer. */
  end: number;
  layerStore: LayerStore;
  /** Checked before every layer; an abort stops the group with CANCELLED. */
  signal: AbortSignal;
  logger?: Logger;
  /** Awaited after each layer is saved, with the layer's name and its compute time (0 when loaded). */
  onLayer: (name: string, seconds: number) => Promise<void>;
}

/** Compresses and saves the layers `[first, end)` of the plan that are not saved yet. */
export async function compressLayerGroup(input: LayerGroupInput): Promise<void> {
  const { checkpoint, layerStore, signal } = input;
  const plan = planCompression(checkpoint, input.options);
  if (input.end > plan.layers.length || input.first >= input.end) {
    throw new Error(
      `layer group [${input.first}, ${input.end}) is outside the plan's ${plan.layers.length} layers: the checkpoint or options changed after the job fanned out`,
    );
  }
  for (const layer of plan.layers.slice(input.first, input.end)) {
    if (signal.aborted)
      throw new CompressionError("CANCELLED", "compression cancelled between layers");
    const name = layer.source.name;
    if ((await layerStore.load(name)) !== undefined) {
      input.logger?.debug({ layer: name }, "layer loaded from an earlier attempt");
      await input.onLayer(name, 0);
      continue;
    }
    const data = await checkpoint.readTensorFloat32(layer.source); // [m, n]
    assertFinite(name, data, layer.source.shape);
    const encoded = await compressLayer(
      name,
      { rows: layer.m, cols: layer.n, data },
      layer.rank,
      layer.representation,
      layer.outputDtype,
    );
    await layerStore.save(name, encoded);
    await input.onLayer(name, encoded.report.seconds);
  }
}
