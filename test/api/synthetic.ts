/**
 * Synthetic LLaMA-shaped checkpoints with random float32 weights, written by the project's
 * safetensors writer. Bigger than the fixture, so a job runs long enough to be cancelled or
 * interrupted between layers.
 */

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createSafetensorsWriter, type PlannedTensor } from "../../src/checkpoint/writer.ts";
import { gaussian, rng } from "../helpers/matrices.ts";

export interface SyntheticShape {
  layers: number;
  hidden: number;
  intermediate: number;
  vocab: number;
  /** Tensor bytes per shard; without it the checkpoint is one `model.safetensors`. */
  maxShardBytes?: number;
  seed?: number;
  /** Tensor whose first value is written as NaN, to make a checkpoint that fails only when compressed. */
  nanTensor?: string;
}

function plannedTensors(shape: SyntheticShape): PlannedTensor[] {
  const { hidden, intermediate } = shape;
  const tensors: PlannedTensor[] = [
    { name: "model.embed_tokens.weight", dtype: "F32", shape: [shape.vocab, hidden] },
  ];
  for (let layer = 0; layer < shape.layers; layer++) {
    const prefix = `model.layers.${layer}`;
    tensors.push(
      { name: `${prefix}.input_layernorm.weight`, dtype: "F32", shape: [hidden] },
      { name: `${prefix}.self_attn.q_proj.weight`, dtype: "F32", shape: [hidden, hidden] },
      { name: `${prefix}.self_attn.k_proj.weight`, dtype: "F32", shape: [hidden, hidden] },
      { name: `${prefix}.self_attn.v_proj.weight`, dtype: "F32", shape: [hidden, hidden] },
      { name: `${prefix}.self_attn.o_proj.weight`, dtype: "F32", shape: [hidden, hidden] },
      { name: `${prefix}.post_attention_layernorm.weight`, dtype: "F32", shape: [hidden] },
      { name: `${prefix}.mlp.gate_proj.weight`, dtype: "F32", shape: [intermediate, hidden] },
      { name: `${prefix}.mlp.up_proj.weight`, dtype: "F32", shape: [intermediate, hidden] },
      { name: `${prefix}.mlp.down_proj.weight`, dtype: "F32", shape: [hidden, intermediate] },
    );
  }
  tensors.push({ name: "model.norm.weight", dtype: "F32", shape: [hidden] });
  return tensors;
}

/**
 * Writes the checkpoint and its config.json into `directory` (which must exist) and returns the
 * names of the files written.
 */
export async function writeSyntheticLlama(
  directory: string,
  shape: SyntheticShape,
): Promise<string[]> {
  const planned = plannedTensors(shape);
  const writer = await createSafetensorsWriter({
    directory,
    tensors: planned,
    metadata: { format: "pt" },
    maxShardBytes: shape.maxShardBytes,
  });
  const next = gaussian(rng(shape.seed ?? 1));
  for (const tensor of planned) {
    const values = new Float32Array(tensor.shape.reduce((product, size) => product * size, 1));
    for (let i = 0; i < values.length; i++) values[i] = 0.02 * next();
    if (tensor.name === shape.nanTensor) values[0] = Number.NaN;
    await writer.writeTensor(tensor.name, values);
  }
  const { files } = await writer.close();
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: shape.hidden,
    intermediate_size: shape.intermediate,
    num_hidden_layers: shape.layers,
    num_attention_heads: 8,
    num_key_value_heads: 8,
    vocab_size: shape.vocab,
    tie_word_embeddings: true,
    torch_dtype: "float32",
  };
  await writeFile(join(directory, "config.json"), JSON.stringify(config, null, 2));
  return [...files, "config.json"];
}
