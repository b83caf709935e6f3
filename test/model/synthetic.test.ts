import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenDataError } from "../../src/data/errors.ts";
import type { Matrix32 } from "../../src/linalg/matrix.ts";
import { decoderLayerForward } from "../../src/model/decoder-layer.ts";
import { evaluatePerplexity } from "../../src/model/evaluation.ts";
import { applyLinear, type Linear } from "../../src/model/linear.ts";
import { embed, modelForward } from "../../src/model/model.ts";
import { openModel } from "../../src/model/open.ts";
import { loadDecoderLayer, loadResidentWeights } from "../../src/model/weights.ts";
import { pifaFromLowRank } from "../../src/numerics/pifa.ts";
import {
  naiveLogits,
  naiveMeanNll,
  type SyntheticConfig,
  type SyntheticTensor,
  syntheticTensors,
  writeSyntheticCheckpoint,
} from "./helpers.ts";

let work: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "pifa-model-synthetic-"));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Writes a synthetic checkpoint into a fresh directory and returns its path and tensors. */
async function build(name: string, config: SyntheticConfig, seed: number) {
  const directory = path.join(work, name);
  const { mkdir } = await import("node:fs/promises");
  await mkdir(directory);
  const tensors = syntheticTensors(config, seed);
  await writeSyntheticCheckpoint(directory, config, tensors);
  return { directory, tensors };
}

function maxAbsDifference(actual: Matrix32, expected: Float64Array[]): number {
  let worst = 0;
  for (let t = 0; t < expected.length; t++) {
    for (let j = 0; j < expected[t].length; j++) {
      worst = Math.max(worst, Math.abs(actual.data[t * actual.cols + j] - expected[t][j]));
    }
  }
  return worst;
}

const QWEN2: SyntheticConfig = {
  architecture: "Qwen2ForCausalLM",
  hidden: 16,
  intermediate: 24,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  vocab: 40,
  tied: false,
  eps: 1e-6,
  theta: 10000,
};

const SEQUENCES = [
  [3, 17, 5, 5, 39, 0, 12, 8, 21, 30, 2],
  [7, 1, 33, 14, 9, 26],
];

/** Default inverse frequencies of head size 4, theta 1e4: `[1, 0.01]`. */
const QWEN2_FREQUENCIES = [1, 0.01];

describe("synthetic Qwen2 with biases and grouped-query attention", () => {
  let directory: string;
  let tensors: SyntheticTensor[];

  beforeAll(async () => {
    ({ directory, tensors } = await build("qwen2", QWEN2, 11));
  });

  it("loads q, k and v biases but none on o", async () => {
    const { checkpoint, spec } = await openModel(directory);
    const layer = await loadDecoderLayer(checkpoint, spec, 1);
    await checkpoint.close();
    expect(layer.linears.q.bias).toHaveLength(16);
    expect(layer.linears.k.bias).toHaveLength(8);
    expect(layer.linears.v.bias).toHaveLength(8);
    expect(layer.linears.o.bias).toBeUndefined();
    expect(layer.linears.down.bias).toBeUndefined();
  });

  it("logits match a naive float64 forward pass", async () => {
    const { checkpoint, spec } = await openModel(directory);
    try {
      for (const tokens of SEQUENCES) {
        const logits = await modelForward(checkpoint, spec, tokens);
        const expected = naiveLogits(QWEN2, tensors, tokens, QWEN2_FREQUENCIES);
        expect(maxAbsDifference(logits, expected)).toBeLessThan(1e-4);
      }
    } finally {
      await checkpoint.close();
    }
  });

  it("mean NLL matches the naive forward pass", async () => {
    const { checkpoint, spec } = await openModel(directory);
    const result = await evaluatePerplexity(checkpoint, spec, SEQUENCES);
    await checkpoint.close();
    const logits = SEQUENCES.map((tokens) =>
      naiveLogits(QWEN2, tensors, tokens, QWEN2_FREQUENCIES),
    );
    expect(result.tokens).toBe(10 + 5);
    expect(Math.abs(result.meanNll - naiveMeanNll(logits, SEQUENCES))).toBeLessThan(1e-5);
  });

  it("low-rank and PIFA linears match dense", async () => {
    const { checkpoint, spec } = await openModel(directory);
    const resident = await loadResidentWeights(checkpoint, spec);
    const layer = await loadDecoderLayer(checkpoint, spec, 0);
    await checkpoint.close();
    const h = embed(resident.embedding, SEQUENCES[0]);
    const dense = layer.linears.gate;
    if (dense.kind !== "dense") throw new Error("expected a dense gate_proj");
    // W = W I: an exact low-rank pair of rank n = 16 and its PIFA form.
    const identity: Matrix32 = { rows: 16, cols: 16, data: new Float32Array(256) };
    for (let i = 0; i < 16; i++) identity.data[i * 16 + i] = 1;
    const lowRank: Linear = { kind: "low-rank", a: dense.weight, b: identity };
    const pifa: Linear = { kind: "pifa", layer: await pifaFromLowRank(dense.weight, identity) };

    const reference = await decoderLayerForward(layer, spec, h);
    for (const gate of [lowRank, pifa]) {
      const x = await applyLinear(gate, h);
      const y = await applyLinear(dense, h);
      let worst = 0;
      for (let i = 0; i < x.data.length; i++)
        worst = Math.max(worst, Math.abs(x.data[i] - y.data[i]));
      expect(worst).toBeLessThan(1e-5);

      const swapped = { ...layer, linears: { ...layer.linears, gate } };
      const output = await decoderLayerForward(swapped, spec, h);
      let drift = 0;
      for (let i = 0; i < output.data.length; i++) {
        drift = Math.max(drift, Math.abs(output.data[i] - reference.data[i]));
      }
      expect(drift).toBeLessThan(1e-4);
    }
  });
});

describe("synthetic Llama with llama3 rope scaling", () => {
  const config: SyntheticConfig = {
    architecture: "LlamaForCausalLM",
    hidden: 16,
    intermediate: 20,
    layers: 2,
    heads: 2,
    kvHeads: 1,
    vocab: 30,
    tied: true,
    eps: 1e-5,
    theta: 10000,
    extra: {
      attention_bias: true,
      rope_scaling: {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 1000,
      },
    },
  };
  // Head size 8: frequencies [1, 0.1, 0.01, 0.001] become [1, 0.1, 0.0029753525, 0.000125].
  const scaled = [1, 0.1, 0.00297535250684695, 0.000125];
  const unscaled = [1, 0.1, 0.01, 0.001];
  const tokens = [1, 4, 29, 7, 7, 0, 13, 22, 5, 18, 2, 11, 26, 9, 3, 16, 8, 27, 6, 14];

  it("logits match hand-computed frequencies", async () => {
    const { directory, tensors } = await build("llama3", config, 5);
    const { checkpoint, spec } = await openModel(directory);
    const logits = await modelForward(checkpoint, spec, tokens);
    const layer = await loadDecoderLayer(checkpoint, spec, 0);
    await checkpoint.close();
    expect(layer.linears.o.bias).toHaveLength(16);

    expect(maxAbsDifference(logits, naiveLogits(config, tensors, tokens, scaled))).toBeLessThan(
      1e-4,
    );
    // Without the scaling the logits differ, so the comparison above can fail.
    expect(
      maxAbsDifference(logits, naiveLogits(config, tensors, tokens, unscaled)),
    ).toBeGreaterThan(1e-3);
  });
});

describe("synthetic Mistral with a sliding window", () => {
  const config: SyntheticConfig = {
    architecture: "MistralForCausalLM",
    hidden: 8,
    intermediate: 12,
    layers: 1,
    heads: 2,
    kvHeads: 2,
    vocab: 20,
    tied: false,
    eps: 1e-6,
    theta: 10000,
    extra: { sliding_window: 6 },
  };

  it("evaluates sequences within the window", async () => {
    const { directory, tensors } = await build("mistral-ok", config, 3);
    const { checkpoint, spec } = await openModel(directory);
    const sequences = [[1, 2, 3, 4, 5, 6]];
    const result = await evaluatePerplexity(checkpoint, spec, sequences);
    await checkpoint.close();
    const logits = naiveLogits(config, tensors, sequences[0], [1, 0.01]);
    expect(Math.abs(result.meanNll - naiveMeanNll([logits], sequences))).toBeLessThan(1e-5);
  });

  it("rejects a sequence longer than the window", async () => {
    const { directory } = await build("mistral-long", config, 3);
    const { checkpoint, spec } = await openModel(directory);
    const error = await evaluatePerplexity(checkpoint, spec, [
      [1, 2, 3],
      [1, 2, 3, 4, 5, 6, 7],
    ]).catch((caught: unknown) => caught);
    await checkpoint.close();
    expect(error).toBeInstanceOf(TokenDataError);
    expect((error as TokenDataError).code).toBe("INVALID_TOKENS");
    expect((error as TokenDataError).field).toBe("evaluation.sequences[1]");
    expect((error as TokenDataError).message).toContain("sliding_window 6 of MistralForCausalLM");
  });
});
