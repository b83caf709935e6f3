/**
 * Test helpers for the forward pass: the stories260K fixture, tiny synthetic
 * checkpoints written with the project's safetensors writer, and a naive
 * float64 reference forward pass. The reference follows the Hugging Face
 * LLaMA modeling code one token, one head and one element at a time, with no
 * BLAS.
 */

import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { createSafetensorsWriter } from "../../src/checkpoint/writer.ts";
import { gaussian, rng } from "../helpers/matrices.ts";

export const FIXTURE = path.resolve("test/fixtures/stories260K");
export const EVAL_FIXTURE = path.resolve("test/fixtures/tinystories/eval-stories260K.json");

export interface EvalFixture {
  texts: string[];
  sequences: number[][];
  reference: {
    predicted_tokens: number;
    mean_nll: number;
    perplexity: number;
    greedy_from_bos: number[];
  };
}

export async function readEvalFixture(): Promise<EvalFixture> {
  return JSON.parse(await readFile(EVAL_FIXTURE, "utf8")) as EvalFixture;
}

/** A tensor for a synthetic checkpoint, row-major. */
export interface SyntheticTensor {
  name: string;
  shape: number[];
  data: Float64Array;
}

/** Sizes and options of a synthetic LLaMA-family model. */
export interface SyntheticConfig {
  architecture: "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM";
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  tied: boolean;
  eps: number;
  theta: number;
  /** Extra config.json keys (rope_scaling, sliding_window, attention_bias, ...). */
  extra?: Record<string, unknown>;
}

const LINEARS = [
  ["self_attn.q_proj", "q"],
  ["self_attn.k_proj", "kv"],
  ["self_attn.v_proj", "kv"],
  ["self_attn.o_proj", "o"],
  ["mlp.gate_proj", "up"],
  ["mlp.up_proj", "up"],
  ["mlp.down_proj", "down"],
] as const;

/** Returns the module paths that carry a bias under `config`. */
export function biasedModules(config: SyntheticConfig): Set<string> {
  const biased = new Set<string>();
  if (config.architecture === "Qwen2ForCausalLM" || config.extra?.attention_bias === true) {
    for (const name of ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"])
      biased.add(name);
  }
  if (config.architecture === "LlamaForCausalLM" && config.extra?.attention_bias === true) {
    biased.add("self_attn.o_proj");
  }
  return biased;
}

/** Random weights for `config`, with scales that keep activations of order one. */
export function syntheticTensors(config: SyntheticConfig, seed: number): SyntheticTensor[] {
  const normal = gaussian(rng(seed));
  const headDim = config.hidden / config.heads;
  const tensor = (name: string, shape: number[], scale: number, offset = 0): SyntheticTensor => {
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Float64Array(size);
    for (let i = 0; i < size; i++) data[i] = offset + scale * normal();
    return { name, shape, data };
  };
  const shapes: Record<string, [number, number]> = {
    q: [config.heads * headDim, config.hidden],
    kv: [config.kvHeads * headDim, config.hidden],
    o: [config.hidden, config.heads * headDim],
    up: [config.intermediate, config.hidden],
    down: [config.hidden, config.intermediate],
  };
  const biased = biasedModules(config);
  const tensors = [tensor("model.embed_tokens.weight", [config.vocab, config.hidden], 1)];
  for (let layer = 0; layer < config.layers; layer++) {
    const prefix = `model.layers.${layer}`;
    tensors.push(tensor(`${prefix}.input_layernorm.weight`, [config.hidden], 0.1, 1));
    tensors.push(tensor(`${prefix}.post_attention_layernorm.weight`, [config.hidden], 0.1, 1));
    for (const [module, kind] of LINEARS) {
      const [m, n] = shapes[kind];
      tensors.push(tensor(`${prefix}.${module}.weight`, [m, n], 1 / Math.sqrt(n)));
      if (biased.has(module)) tensors.push(tensor(`${prefix}.${module}.bias`, [m], 0.3));
    }
  }
  tensors.push(tensor("model.norm.weight", [config.hidden], 0.1, 1));
  if (!config.tied) tensors.push(tensor("lm_head.weight", [config.vocab, config.hidden], 0.5));
  return tensors;
}

export function configJson(config: SyntheticConfig): Record<string, unknown> {
  return {
    architectures: [config.architecture],
    hidden_size: config.hidden,
    intermediate_size: config.intermediate,
    num_hidden_layers: config.layers,
    num_attention_heads: config.heads,
    num_key_value_heads: config.kvHeads,
    vocab_size: config.vocab,
    rms_norm_eps: config.eps,
    rope_theta: config.theta,
    tie_word_embeddings: config.tied,
    hidden_act: "silu",
    ...config.extra,
  };
}

/** Writes `config.json` and `model.safetensors` (F32) into `directory`. */
export async function writeSyntheticCheckpoint(
  directory: string,
  config: SyntheticConfig,
  tensors: readonly SyntheticTensor[],
): Promise<void> {
  const writer = await createSafetensorsWriter({
    directory,
    tensors: tensors.map((t) => ({ name: t.name, dtype: "F32", shape: t.shape })),
  });
  for (const t of tensors) await writer.writeTensor(t.name, Float32Array.from(t.data));
  await writer.close();
  await writeFile(path.join(directory, "config.json"), JSON.stringify(configJson(config)));
}

/** Returns the float32 values the checkpoint stores, widened back to float64. */
function stored(tensor: SyntheticTensor): Float64Array {
  return Float64Array.from(Float32Array.from(tensor.data));
}

/** `x W^T + b` for one token `x` `[n]` and `W` `[m, n]`. */
function linear(x: Float64Array, w: Float64Array, m: number, bias?: Float64Array): Float64Array {
  const n = x.length;
  const y = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let sum = bias === undefined ? 0 : bias[i];
    for (let j = 0; j < n; j++) sum += w[i * n + j] * x[j];
    y[i] = sum;
  }
  return y;
}

function rmsNorm(x: Float64Array, weight: Float64Array, eps: number): Float64Array {
  let mean = 0;
  for (const v of x) mean += v * v;
  mean /= x.length;
  const scale = 1 / Math.sqrt(mean + eps);
  return x.map((v, i) => weight[i] * v * scale);
}

/** Rotates one head `x` `[d]` in place by position `pos` (rotate-half convention). */
function rotate(x: Float64Array, offset: number, d: number, pos: number, freqs: number[]): void {
  const half = d / 2;
  for (let i = 0; i < half; i++) {
    const angle = pos * freqs[i];
    const a = x[offset + i];
    const b = x[offset + half + i];
    x[offset + i] = a * Math.cos(angle) - b * Math.sin(angle);
    x[offset + half + i] = b * Math.cos(angle) + a * Math.sin(angle);
  }
}

/**
 * Naive float64 logits `[T][vocab]` of one sequence. `freqs` are the rotary
 * inverse frequencies, computed by the caller.
 */
export function naiveLogits(
  config: SyntheticConfig,
  tensors: readonly SyntheticTensor[],
  tokens: readonly number[],
  freqs: number[],
): Float64Array[] {
  const byName = new Map(tensors.map((t) => [t.name, stored(t)]));
  const get = (name: string) => {
    const value = byName.get(name);
    if (value === undefined) throw new Error(`synthetic tensor ${name} missing`);
    return value;
  };
  const { hidden, heads, kvHeads, eps } = config;
  const headDim = hidden / heads;
  const group = heads / kvHeads;
  const embedding = get("model.embed_tokens.weight");
  let states = tokens.map((id) => embedding.slice(id * hidden, (id + 1) * hidden));

  for (let layer = 0; layer < config.layers; layer++) {
    const p = `model.layers.${layer}`;
    const bias = (module: string) => byName.get(`${p}.${module}.bias`);
    const xs = states.map((h) => rmsNorm(h, get(`${p}.input_layernorm.weight`), eps));
    const q = xs.map((x, t) => {
      const y = linear(
        x,
        get(`${p}.self_attn.q_proj.weight`),
        heads * headDim,
        bias("self_attn.q_proj"),
      );
      for (let h = 0; h < heads; h++) rotate(y, h * headDim, headDim, t, freqs);
      return y;
    });
    const k = xs.map((x, t) => {
      const y = linear(
        x,
        get(`${p}.self_attn.k_proj.weight`),
        kvHeads * headDim,
        bias("self_attn.k_proj"),
      );
      for (let h = 0; h < kvHeads; h++) rotate(y, h * headDim, headDim, t, freqs);
      return y;
    });
    const v = xs.map((x) =>
      linear(x, get(`${p}.self_attn.v_proj.weight`), kvHeads * headDim, bias("self_attn.v_proj")),
    );
    const afterAttention = states.map((h, t) => {
      const context = new Float64Array(heads * headDim);
      for (let head = 0; head < heads; head++) {
        const kv = Math.floor(head / group);
        const scores: number[] = [];
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < headDim; i++) {
            dot += q[t][head * headDim + i] * k[s][kv * headDim + i];
          }
          scores.push(dot / Math.sqrt(headDim));
        }
        const max = Math.max(...scores);
        const weights = scores.map((score) => Math.exp(score - max));
        const total = weights.reduce((a, b) => a + b, 0);
        for (let s = 0; s <= t; s++) {
          for (let i = 0; i < headDim; i++) {
            context[head * headDim + i] += (weights[s] / total) * v[s][kv * headDim + i];
          }
        }
      }
      const o = linear(
        context,
        get(`${p}.self_attn.o_proj.weight`),
        hidden,
        bias("self_attn.o_proj"),
      );
      return h.map((value, i) => value + o[i]);
    });
    states = afterAttention.map((h) => {
      const x = rmsNorm(h, get(`${p}.post_attention_layernorm.weight`), eps);
      const gate = linear(x, get(`${p}.mlp.gate_proj.weight`), config.intermediate);
      const up = linear(x, get(`${p}.mlp.up_proj.weight`), config.intermediate);
      const z = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
      const down = linear(z, get(`${p}.mlp.down_proj.weight`), hidden);
      return h.map((value, i) => value + down[i]);
    });
  }
  const head = config.tied ? embedding : get("lm_head.weight");
  return states.map((h) => linear(rmsNorm(h, get("model.norm.weight"), eps), head, config.vocab));
}

/** Mean next-token negative log-likelihood of naive logits, in float64. */
export function naiveMeanNll(logits: Float64Array[][], sequences: readonly number[][]): number {
  let total = 0;
  let count = 0;
  sequences.forEach((tokens, s) => {
    for (let t = 0; t + 1 < tokens.length; t++) {
      const row = logits[s][t];
      const max = Math.max(...row);
      let sum = 0;
      for (const value of row) sum += Math.exp(value - max);
      total += max + Math.log(sum) - row[tokens[t + 1]];
      count++;
    }
  });
  return total / count;
}
