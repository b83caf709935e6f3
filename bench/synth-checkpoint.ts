/**
 * Synthetic LLaMA-shaped checkpoints for the model-scale benchmarks: every
 * tensor of a LlamaForCausalLM (embedding, decoder layers, final norm, output
 * head) with the real shapes, in F16 or BF16, plus a matching config.json.
 *
 * The projection weights have an exact power-law spectrum
 * `s_i = c (i + 1)^-alpha`, with `c` chosen so the root-mean-square entry is
 * `rms` (0.02 by default, close to real LLaMA weights and far from F16's
 * subnormal range). One core `C = U diag(s) V^T` per shape comes from
 * `synthLayer` (thin QRs of Gaussian matrices). Each tensor is then
 * `W = H_1 P_1 D_1 C D_2 P_2^T H_2`: random row and column permutations `P`,
 * random signs `D` and one random Householder reflection `H` on each side.
 * These are orthogonal, so every tensor keeps exactly the spectrum of `C`,
 * but its singular vectors differ from every other tensor's. A tensor then
 * costs O(m n) instead of the O(m n min(m, n)) of fresh QRs.
 *
 * Tensors are generated, encoded and written one at a time with the
 * project's streaming writer. Memory use is the cores (one per projection
 * shape, about 430 MB for LLaMA-7B) plus one tensor, whatever the number of
 * layers.
 *
 * Usage: npx tsx bench/synth-checkpoint.ts --out DIR [--layers 2] [--vocab 32000]
 *   [--hidden 4096] [--intermediate 11008] [--heads 32] [--kv-heads 32]
 *   [--dtype F16|BF16] [--alpha 1] [--rms 0.02] [--shard-size BYTES] [--seed 1]
 */

import { access, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { encodeFloat32 } from "../src/checkpoint/float-codec.ts";
import { createSafetensorsWriter, type PlannedTensor } from "../src/checkpoint/writer.ts";
import { type Matrix32, transpose } from "../src/linalg/matrix.ts";
import * as native from "../src/native/index.ts";
import { synthLayer } from "./lib.ts";

export type SyntheticDtype = "F16" | "BF16";

/** Model dimensions, named as in a Hugging Face LLaMA config.json. */
export interface LlamaShape {
  hiddenSize: number;
  intermediateSize: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  vocabSize: number;
  numHiddenLayers: number;
}

/** LLaMA-7B (LLaMA 1 and 2) with the layer count left to the caller. */
export const LLAMA_7B: Omit<LlamaShape, "numHiddenLayers"> = {
  hiddenSize: 4096,
  intermediateSize: 11008,
  numAttentionHeads: 32,
  numKeyValueHeads: 32,
  vocabSize: 32000,
};

export interface SyntheticCheckpointOptions {
  /** Output directory; created if missing. */
  outDir: string;
  shape: LlamaShape;
  dtype: SyntheticDtype;
  /** Power-law exponent of the projection spectra. */
  alpha: number;
  /** Root-mean-square entry of every projection weight and of the embeddings. */
  rms: number;
  /** Tensor data bytes per shard; without it the checkpoint is one model.safetensors. */
  shardBytes?: number;
  seed: number;
  /** Called after each tensor is written. */
  onTensor?: (name: string, index: number, total: number) => void;
}

export interface SyntheticCheckpoint {
  /** File names written into `outDir`, config.json last. */
  files: string[];
  /** Tensor data bytes over all shards. */
  tensorBytes: number;
  tensors: number;
  seconds: number;
}

type TensorKind = "projection" | "norm" | "embedding";

interface SyntheticTensor extends PlannedTensor {
  readonly kind: TensorKind;
  readonly shape: [number, number] | [number];
}

/** Lists every tensor of a LlamaForCausalLM in Hugging Face names, in model order. */
export function llamaTensors(shape: LlamaShape, dtype: SyntheticDtype): SyntheticTensor[] {
  const h = shape.hiddenSize;
  const kv = (h / shape.numAttentionHeads) * shape.numKeyValueHeads;
  const i = shape.intermediateSize;
  const tensors: SyntheticTensor[] = [
    { name: "model.embed_tokens.weight", dtype, shape: [shape.vocabSize, h], kind: "embedding" },
  ];
  for (let layer = 0; layer < shape.numHiddenLayers; layer++) {
    const prefix = `model.layers.${layer}`;
    const add = (name: string, dims: [number, number] | [number], kind: TensorKind) =>
      tensors.push({ name: `${prefix}.${name}`, dtype, shape: dims, kind });
    add("input_layernorm.weight", [h], "norm");
    add("self_attn.q_proj.weight", [h, h], "projection");
    add("self_attn.k_proj.weight", [kv, h], "projection");
    add("self_attn.v_proj.weight", [kv, h], "projection");
    add("self_attn.o_proj.weight", [h, h], "projection");
    add("post_attention_layernorm.weight", [h], "norm");
    add("mlp.gate_proj.weight", [i, h], "projection");
    add("mlp.up_proj.weight", [i, h], "projection");
    add("mlp.down_proj.weight", [h, i], "projection");
  }
  tensors.push({ name: "model.norm.weight", dtype, shape: [h], kind: "norm" });
  tensors.push({ name: "lm_head.weight", dtype, shape: [shape.vocabSize, h], kind: "embedding" });
  return tensors;
}

/** Builds the config.json of a LlamaForCausalLM with these dimensions (LLaMA-2 defaults elsewhere). */
export function llamaConfig(shape: LlamaShape, dtype: SyntheticDtype): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: shape.hiddenSize,
    intermediate_size: shape.intermediateSize,
    num_hidden_layers: shape.numHiddenLayers,
    num_attention_heads: shape.numAttentionHeads,
    num_key_value_heads: shape.numKeyValueHeads,
    vocab_size: shape.vocabSize,
    hidden_act: "silu",
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: dtype === "F16" ? "float16" : "bfloat16",
  };
}

/** Seeded xorshift32 generator with Gaussian samples by Box–Muller. */
class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0 || 1;
  }

  uniform(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return (this.#state + 0.5) / 4294967296;
  }

  gaussian(): number {
    return Math.sqrt(-2 * Math.log(this.uniform())) * Math.cos(2 * Math.PI * this.uniform());
  }

  permutation(length: number): Int32Array {
    const order = new Int32Array(length);
    for (let i = 0; i < length; i++) order[i] = i;
    for (let i = length - 1; i > 0; i--) {
      const j = Math.floor(this.uniform() * (i + 1));
      const swap = order[i];
      order[i] = order[j];
      order[j] = swap;
    }
    return order;
  }

  signs(length: number): Float32Array {
    const signs = new Float32Array(length);
    for (let i = 0; i < length; i++) signs[i] = this.uniform() < 0.5 ? -1 : 1;
    return signs;
  }

  /** Returns a Gaussian direction of unit Euclidean norm. */
  unitVector(length: number): Float32Array {
    const v = new Float32Array(length);
    let norm = 0;
    for (let i = 0; i < length; i++) {
      v[i] = this.gaussian();
      norm += v[i] * v[i];
    }
    const scale = 1 / Math.sqrt(norm);
    for (let i = 0; i < length; i++) v[i] *= scale;
    return v;
  }
}

/** Scale `c` with `sum_i (c (i + 1)^-alpha)^2 = m n rms^2`. */
export function spectrumScale(m: number, n: number, alpha: number, rms: number): number {
  let sum = 0;
  for (let i = 0; i < Math.min(m, n); i++) sum += (i + 1) ** (-2 * alpha);
  return rms * Math.sqrt((m * n) / sum);
}

/** Projection weights with the power-law spectrum; caches one core per shape. */
class SpectralGenerator {
  readonly #cores = new Map<string, Matrix32>();
  readonly #alpha: number;
  readonly #rms: number;
  readonly #random: Random;
  readonly #seed: number;

  constructor(alpha: number, rms: number, seed: number) {
    this.#alpha = alpha;
    this.#rms = rms;
    this.#seed = seed;
    this.#random = new Random(seed + 0x9e3779b9);
  }

  async #core(m: number, n: number): Promise<Matrix32> {
    const key = `${m}x${n}`;
    const cached = this.#cores.get(key);
    if (cached) return cached;
    const flipped = this.#cores.get(`${n}x${m}`);
    let core: Matrix32;
    if (flipped) {
      core = transpose(flipped); // [m, n]
    } else {
      core = await synthLayer(m, n, this.#alpha, this.#seed + this.#cores.size * 2); // [m, n]
      const scale = spectrumScale(m, n, this.#alpha, this.#rms);
      for (let i = 0; i < core.data.length; i++) core.data[i] *= scale;
    }
    this.#cores.set(key, core);
    return core;
  }

  /** Generates a new `[m, n]` weight `H_1 P_1 D_1 C D_2 P_2^T H_2` with the spectrum of the core `C`. */
  async next(m: number, n: number): Promise<Matrix32> {
    const core = await this.#core(m, n);
    const random = this.#random;
    const rowOrder = random.permutation(m);
    const colOrder = random.permutation(n);
    const rowSigns = random.signs(m);
    const colSigns = random.signs(n);
    const out = new Float32Array(m * n); // [m, n]
    for (let i = 0; i < m; i++) {
      const source = core.data.subarray(rowOrder[i] * n, (rowOrder[i] + 1) * n);
      const rowSign = rowSigns[i];
      const base = i * n;
      for (let j = 0; j < n; j++) out[base + j] = rowSign * colSigns[j] * source[colOrder[j]];
    }
    const w: Matrix32 = { rows: m, cols: n, data: out };

    // Left reflection W <- W - 2 u (u^T W), with t = u^T W [1, n].
    const u = random.unitVector(m);
    const t = await native.gemm({ rows: 1, cols: m, data: u }, w);
    rankOneUpdate(out, u, t.data, n);
    // Right reflection W <- W - 2 (W v) v^T, with s = W v [m, 1].
    const v = random.unitVector(n);
    const s = await native.gemm(w, { rows: n, cols: 1, data: v });
    rankOneUpdate(out, s.data, v, n);
    return w;
  }
}

/** `w -= 2 left right^T` for row-major `w` `[left.length, n]`. */
function rankOneUpdate(w: Float32Array, left: Float32Array, right: Float32Array, n: number): void {
  for (let i = 0; i < left.length; i++) {
    const scale = 2 * left[i];
    if (scale === 0) continue;
    const base = i * n;
    for (let j = 0; j < n; j++) w[base + j] -= scale * right[j];
  }
}

/** Encodes Gaussian rows of RMS `rms` in chunks, so no float32 copy of the whole tensor exists. */
function gaussianBytes(
  rows: number,
  cols: number,
  rms: number,
  dtype: SyntheticDtype,
  random: Random,
): Buffer {
  const out = Buffer.allocUnsafeSlow(rows * cols * 2);
  const chunkRows = Math.max(1, Math.floor((1 << 20) / cols));
  const chunk = new Float32Array(chunkRows * cols);
  for (let start = 0; start < rows; start += chunkRows) {
    const count = Math.min(chunkRows, rows - start);
    const values = chunk.subarray(0, count * cols);
    for (let i = 0; i < values.length; i++) values[i] = rms * random.gaussian();
    encodeFloat32(values, dtype).copy(out, start * cols * 2);
  }
  return out;
}

/** RMSNorm gains around 1, as in trained checkpoints. */
function normBytes(size: number, dtype: SyntheticDtype, random: Random): Buffer {
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) values[i] = 1 + 0.05 * random.gaussian();
  return encodeFloat32(values, dtype);
}

/** Checks the dimensions before any work, so a bad flag fails at once. */
export function checkShape(shape: LlamaShape): void {
  for (const [key, value] of Object.entries(shape)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`invalid ${key} ${value}: expected a positive integer`);
    }
  }
  if (shape.hiddenSize % shape.numAttentionHeads !== 0) {
    throw new RangeError(
      `hidden size ${shape.hiddenSize} is not a multiple of ${shape.numAttentionHeads} attention heads: pick a head count that divides it`,
    );
  }
  if (shape.numAttentionHeads % shape.numKeyValueHeads !== 0) {
    throw new RangeError(
      `${shape.numAttentionHeads} attention heads are not a multiple of ${shape.numKeyValueHeads} key-value heads: pick a divisor`,
    );
  }
}

/** Writes the checkpoint and its config.json into `options.outDir`. */
export async function writeSyntheticCheckpoint(
  options: SyntheticCheckpointOptions,
): Promise<SyntheticCheckpoint> {
  checkShape(options.shape);
  const started = performance.now();
  const tensors = llamaTensors(options.shape, options.dtype);
  await mkdir(options.outDir, { recursive: true });
  const writer = await createSafetensorsWriter({
    directory: options.outDir,
    tensors: tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
    metadata: { format: "pt", "pifa.synthetic": "power-law spectra" },
    maxShardBytes: options.shardBytes,
  });
  const spectral = new SpectralGenerator(options.alpha, options.rms, options.seed);
  const random = new Random(options.seed);
  try {
    for (const [index, tensor] of tensors.entries()) {
      let bytes: Buffer;
      if (tensor.kind === "projection") {
        const [m, n] = tensor.shape as [number, number];
        bytes = encodeFloat32((await spectral.next(m, n)).data, options.dtype);
      } else if (tensor.kind === "embedding") {
        const [rows, cols] = tensor.shape as [number, number];
        bytes = gaussianBytes(rows, cols, options.rms, options.dtype, random);
      } else {
        bytes = normBytes(tensor.shape[0], options.dtype, random);
      }
      await writer.writeTensor(tensor.name, bytes);
      options.onTensor?.(tensor.name, index, tensors.length);
    }
    const written = await writer.close();
    const config = llamaConfig(options.shape, options.dtype);
    await writeFile(
      path.join(options.outDir, "config.json"),
      `${JSON.stringify(config, null, 2)}\n`,
    );
    return {
      files: [...written.files, "config.json"],
      tensorBytes: written.totalSize,
      tensors: tensors.length,
      seconds: (performance.now() - started) / 1000,
    };
  } catch (error) {
    await writer.abort();
    throw error;
  }
}

/** Default directory of the benchmarks' checkpoints and scratch files. */
export const BENCH_WORK_DIR = path.join(os.tmpdir(), "pifa-bench");

/**
 * Returns the directory of a synthetic checkpoint (alpha 1, RMS 0.02, seed 1)
 * under `work`, named after its dimensions, and generates it unless a
 * complete one (with config.json, which is written last) is already there.
 */
export async function ensureSyntheticCheckpoint(
  work: string,
  shape: LlamaShape,
  dtype: SyntheticDtype,
): Promise<{ dir: string; bytes: number }> {
  const dir = path.join(
    work,
    `llama-h${shape.hiddenSize}-i${shape.intermediateSize}-v${shape.vocabSize}-${dtype}-L${shape.numHiddenLayers}`,
  );
  const bytes = llamaTensors(shape, dtype).reduce(
    (sum, tensor) => sum + tensor.shape.reduce((count, dim) => count * dim, 2),
    0,
  );
  const complete = await access(path.join(dir, "config.json")).then(
    () => true,
    () => false,
  );
  if (complete) return { dir, bytes };
  await rm(dir, { recursive: true, force: true });
  process.stderr.write(`generating ${dir}\n`);
  await writeSyntheticCheckpoint({ outDir: dir, shape, dtype, alpha: 1, rms: 0.02, seed: 1 });
  return { dir, bytes };
}

function positiveNumber(flag: string, text: string | undefined): number {
  const value = Number(text);
  if (text === undefined || text.trim() === "" || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(`--${flag} must be a positive number, got ${JSON.stringify(text)}`);
  }
  return value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: "string" },
      layers: { type: "string", default: "2" },
      hidden: { type: "string", default: String(LLAMA_7B.hiddenSize) },
      intermediate: { type: "string", default: String(LLAMA_7B.intermediateSize) },
      heads: { type: "string", default: String(LLAMA_7B.numAttentionHeads) },
      "kv-heads": { type: "string" },
      vocab: { type: "string", default: String(LLAMA_7B.vocabSize) },
      dtype: { type: "string", default: "F16" },
      alpha: { type: "string", default: "1" },
      rms: { type: "string", default: "0.02" },
      "shard-size": { type: "string" },
      seed: { type: "string", default: "1" },
    },
  });
  if (values.out === undefined) {
    throw new Error("--out is missing: pass the directory that receives the checkpoint");
  }
  if (values.dtype !== "F16" && values.dtype !== "BF16") {
    throw new RangeError(`--dtype must be F16 or BF16, got ${JSON.stringify(values.dtype)}`);
  }
  const heads = positiveNumber("heads", values.heads);
  const shape: LlamaShape = {
    hiddenSize: positiveNumber("hidden", values.hidden),
    intermediateSize: positiveNumber("intermediate", values.intermediate),
    numAttentionHeads: heads,
    numKeyValueHeads:
      values["kv-heads"] === undefined ? heads : positiveNumber("kv-heads", values["kv-heads"]),
    vocabSize: positiveNumber("vocab", values.vocab),
    numHiddenLayers: positiveNumber("layers", values.layers),
  };
  const result = await writeSyntheticCheckpoint({
    outDir: values.out,
    shape,
    dtype: values.dtype,
    alpha: positiveNumber("alpha", values.alpha),
    rms: positiveNumber("rms", values.rms),
    shardBytes:
      values["shard-size"] === undefined
        ? undefined
        : positiveNumber("shard-size", values["shard-size"]),
    seed: positiveNumber("seed", values.seed),
    onTensor: (name, index, total) => process.stderr.write(`[${index + 1}/${total}] ${name}\n`),
  });
  console.log(
    `wrote ${result.tensors} tensors, ${(result.tensorBytes / 2 ** 20).toFixed(1)} MiB, in ${result.seconds.toFixed(1)} s: ${result.files.join(", ")} in ${values.out}`,
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
