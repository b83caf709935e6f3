/** Opens a checkpoint or compressed artifact directory for the forward pass. */

import { type Checkpoint, openCheckpoint } from "../checkpoint/checkpoint.ts";
import { readModelConfig } from "../checkpoint/config.ts";
import { type ModelSpec, modelSpecFromConfig } from "./spec.ts";
import { checkModelTensors } from "./weights.ts";

export interface OpenedModel {
  checkpoint: Checkpoint;
  spec: ModelSpec;
}

/**
 * Reads `config.json`, opens the safetensors files of `directory`, and checks
 * from the headers that every tensor the forward pass needs is present with
 * the right shape. The caller closes `checkpoint`.
 */
export async function openModel(directory: string): Promise<OpenedModel> {
  const spec = modelSpecFromConfig(await readModelConfig(directory));
  const checkpoint = await openCheckpoint(directory);
  try {
    checkModelTensors(checkpoint, spec);
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
  return { checkpoint, spec };
}
