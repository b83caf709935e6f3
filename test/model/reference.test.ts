import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Checkpoint } from "../../src/checkpoint/checkpoint.ts";
import { attentionContext } from "../../src/model/attention.ts";
import {
  attentionInput,
  decoderLayerForward,
  defaultPositions,
  mlpInput,
  residualAfterAttention,
  residualAfterMlp,
} from "../../src/model/decoder-layer.ts";
import { evaluatePerplexity } from "../../src/model/evaluation.ts";
import { greedyDecode } from "../../src/model/greedy.ts";
import { applyLinear } from "../../src/model/linear.ts";
import { mlpHidden } from "../../src/model/mlp.ts";
import { embed, finalLogits, forwardHidden, modelForward } from "../../src/model/model.ts";
import { openModel } from "../../src/model/open.ts";
import type { ModelSpec } from "../../src/model/spec.ts";
import { loadDecoderLayer, loadResidentWeights } from "../../src/model/weights.ts";
import { type EvalFixture, FIXTURE, readEvalFixture } from "./helpers.ts";

let checkpoint: Checkpoint;
let spec: ModelSpec;
let fixture: EvalFixture;

beforeAll(async () => {
  ({ checkpoint, spec } = await openModel(FIXTURE));
  fixture = await readEvalFixture();
});

afterAll(async () => {
  await checkpoint.close();
});

describe("stories260K forward pass", () => {
  it("reads config into a spec", () => {
    expect(spec).toMatchObject({
      architecture: "LlamaForCausalLM",
      hiddenSize: 64,
      intermediateSize: 172,
      numLayers: 5,
      numHeads: 8,
      numKeyValueHeads: 4,
      headDim: 8,
      vocabSize: 512,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      maxPositionEmbeddings: 512,
      tieWordEmbeddings: true,
    });
  });

  it("matches the reference mean NLL", async () => {
    const result = await evaluatePerplexity(checkpoint, spec, fixture.sequences);
    expect(result.sequences).toBe(57);
    expect(result.tokens).toBe(fixture.reference.predicted_tokens);
    expect(Math.abs(result.meanNll - fixture.reference.mean_nll)).toBeLessThan(1e-4);
    expect(Math.abs(result.perplexity - fixture.reference.perplexity)).toBeLessThan(1e-3);
  });

  it("matches the reference greedy ids", async () => {
    const expected = fixture.reference.greedy_from_bos;
    const tokens = await greedyDecode(checkpoint, spec, [1], expected.length);
    expect(tokens).toEqual(expected);
  });

  it("one-sequence batches give the same NLL", async () => {
    const sequences = fixture.sequences.slice(0, 3);
    const together = await evaluatePerplexity(checkpoint, spec, sequences);
    const apart = await evaluatePerplexity(checkpoint, spec, sequences, { activationBytes: 1 });
    expect(apart.tokens).toBe(together.tokens);
    expect(apart.meanNll).toBe(together.meanNll);
  });

  it("sublayer steps equal decoderLayerForward", async () => {
    const tokens = fixture.sequences[0].slice(0, 40);
    const resident = await loadResidentWeights(checkpoint, spec);
    const layer = await loadDecoderLayer(checkpoint, spec, 2);
    const h = embed(resident.embedding, tokens); // [T, hidden]

    const x = await attentionInput(layer, h);
    const q = await applyLinear(layer.linears.q, x);
    const k = await applyLinear(layer.linears.k, x);
    const v = await applyLinear(layer.linears.v, x);
    const context = await attentionContext(layer, spec, q, k, v, defaultPositions(tokens.length));
    expect([context.rows, context.cols]).toEqual([40, 64]);
    const h2 = residualAfterAttention(h, await applyLinear(layer.linears.o, context));
    const x2 = await mlpInput(layer, h2);
    const z = await mlpHidden(
      await applyLinear(layer.linears.gate, x2),
      await applyLinear(layer.linears.up, x2),
    );
    expect([z.rows, z.cols]).toEqual([40, 172]);
    const h3 = residualAfterMlp(h2, await applyLinear(layer.linears.down, z));

    const whole = await decoderLayerForward(layer, spec, h);
    expect(Array.from(h3.data)).toEqual(Array.from(whole.data));
  });

  it("modelForward equals batched final logits", async () => {
    const sequences = [fixture.sequences[1].slice(0, 30), fixture.sequences[2].slice(0, 50)];
    const resident = await loadResidentWeights(checkpoint, spec);
    const hidden = await forwardHidden(checkpoint, spec, sequences, { resident });
    for (const [i, tokens] of sequences.entries()) {
      const logits = await modelForward(checkpoint, spec, tokens, resident);
      expect([logits.rows, logits.cols]).toEqual([tokens.length, 512]);
      const batched = await finalLogits(resident, hidden[i]);
      expect(Array.from(logits.data)).toEqual(Array.from(batched.data));
    }
  });

  it("blocked attention equals one block", async () => {
    const tokens = fixture.sequences[4].slice(0, 50);
    const resident = await loadResidentWeights(checkpoint, spec);
    const layer = await loadDecoderLayer(checkpoint, spec, 1);
    const x = await attentionInput(layer, embed(resident.embedding, tokens));
    const q = await applyLinear(layer.linears.q, x);
    const k = await applyLinear(layer.linears.k, x);
    const v = await applyLinear(layer.linears.v, x);
    const positions = defaultPositions(tokens.length);
    const whole = await attentionContext(layer, spec, q, k, v, positions);
    // 7 rows of 50 scores per block: blocks cross the boundary between stacked heads.
    const blocked = await attentionContext(layer, spec, q, k, v, positions, {
      maxScoreElements: 350,
    });
    let worst = 0;
    for (let i = 0; i < whole.data.length; i++) {
      worst = Math.max(worst, Math.abs(whole.data[i] - blocked.data[i]));
    }
    expect(worst).toBeLessThan(1e-6);
  });

  it("attention leaves its inputs unmodified", async () => {
    const tokens = fixture.sequences[3].slice(0, 12);
    const resident = await loadResidentWeights(checkpoint, spec);
    const layer = await loadDecoderLayer(checkpoint, spec, 0);
    const x = await attentionInput(layer, embed(resident.embedding, tokens));
    const q = await applyLinear(layer.linears.q, x);
    const k = await applyLinear(layer.linears.k, x);
    const v = await applyLinear(layer.linears.v, x);
    const copies = [q, k, v].map((m) => m.data.slice());
    await attentionContext(layer, spec, q, k, v, defaultPositions(tokens.length));
    expect(q.data).toEqual(copies[0]);
    expect(k.data).toEqual(copies[1]);
    expect(v.data).toEqual(copies[2]);
  });
});
