import { describe, expect, it } from "vitest";
import { parseModelConfig } from "../../src/checkpoint/config.ts";
import { ModelError } from "../../src/model/errors.ts";
import {
  defaultInverseFrequencies,
  inverseFrequencies,
  llama3InverseFrequencies,
} from "../../src/model/rope.ts";
import { modelSpecFromConfig, sequenceCap } from "../../src/model/spec.ts";

const LLAMA = {
  architectures: ["LlamaForCausalLM"],
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  vocab_size: 100,
};

function specOf(config: Record<string, unknown>) {
  return modelSpecFromConfig(parseModelConfig(JSON.stringify(config)));
}

function modelError(config: Record<string, unknown>): ModelError {
  try {
    specOf(config);
  } catch (error) {
    expect(error).toBeInstanceOf(ModelError);
    return error as ModelError;
  }
  throw new Error("expected a ModelError");
}

describe("modelSpecFromConfig", () => {
  it("fills transformers defaults for Llama", () => {
    const spec = specOf(LLAMA);
    expect(spec.numKeyValueHeads).toBe(4);
    expect(spec.headDim).toBe(8);
    expect(spec.rmsNormEps).toBe(1e-6);
    expect(spec.ropeTheta).toBe(10000);
    expect(spec.ropeScaling).toBeUndefined();
    expect(spec.slidingWindow).toBeUndefined();
    expect(spec.tieWordEmbeddings).toBe(false);
    expect(spec.biases).toEqual({ qkv: false, o: false, mlp: false });
  });

  it("rejects an unsupported architecture", () => {
    const error = modelError({ ...LLAMA, architectures: ["GPT2LMHeadModel"] });
    expect(error.code).toBe("UNSUPPORTED_ARCHITECTURE");
    expect(error.status).toBe(422);
    expect(error.message).toContain('"GPT2LMHeadModel"');
    expect(error.message).toContain("LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM");
  });

  it("infers the architecture from model_type", () => {
    const { architectures: _, ...rest } = LLAMA;
    expect(specOf({ ...rest, model_type: "qwen2" }).architecture).toBe("Qwen2ForCausalLM");
    expect(modelError({ ...rest, model_type: "gpt2" }).code).toBe("UNSUPPORTED_ARCHITECTURE");
    expect(modelError(rest).code).toBe("INVALID_MODEL_CONFIG");
  });

  it("rejects a missing size field", () => {
    const { intermediate_size: _, ...rest } = LLAMA;
    const error = modelError(rest);
    expect(error.code).toBe("INVALID_MODEL_CONFIG");
    expect(error.field).toBe("intermediate_size");
  });

  it("rejects rope scaling types other than llama3", () => {
    const error = modelError({ ...LLAMA, rope_scaling: { rope_type: "yarn", factor: 4 } });
    expect(error.code).toBe("UNSUPPORTED_MODEL_CONFIG");
    expect(error.message).toContain('"yarn"');
    const legacy = modelError({ ...LLAMA, rope_scaling: { type: "linear", factor: 2 } });
    expect(legacy.message).toContain('"linear"');
    expect(
      specOf({ ...LLAMA, rope_scaling: { rope_type: "default" } }).ropeScaling,
    ).toBeUndefined();
  });

  it("rejects llama3 scaling without its factors", () => {
    const error = modelError({ ...LLAMA, rope_scaling: { rope_type: "llama3", factor: 8 } });
    expect(error.code).toBe("INVALID_MODEL_CONFIG");
    expect(error.field).toBe("rope_scaling.low_freq_factor");
  });

  it("rejects activations other than SiLU", () => {
    const error = modelError({ ...LLAMA, hidden_act: "gelu" });
    expect(error.code).toBe("UNSUPPORTED_MODEL_CONFIG");
    expect(error.field).toBe("hidden_act");
  });

  it("uses an explicit head_dim", () => {
    const spec = specOf({ ...LLAMA, head_dim: 16, num_key_value_heads: 2 });
    expect(spec.headDim).toBe(16);
    expect(spec.numKeyValueHeads).toBe(2);
  });

  it("gives Qwen2 q, k and v biases", () => {
    const spec = specOf({ ...LLAMA, architectures: ["Qwen2ForCausalLM"] });
    expect(spec.biases).toEqual({ qkv: true, o: false, mlp: false });
    expect(spec.slidingWindow).toBeUndefined();
    const windowed = specOf({
      ...LLAMA,
      architectures: ["Qwen2ForCausalLM"],
      use_sliding_window: true,
      sliding_window: 64,
    });
    expect(windowed.slidingWindow).toBe(64);
  });

  it("follows Llama attention_bias and mlp_bias", () => {
    const spec = specOf({ ...LLAMA, attention_bias: true, mlp_bias: true });
    expect(spec.biases).toEqual({ qkv: true, o: true, mlp: true });
  });

  it("caps Mistral sequences at the sliding window", () => {
    const mistral = { ...LLAMA, architectures: ["MistralForCausalLM"] };
    expect(specOf(mistral).slidingWindow).toBe(4096);
    const cap = sequenceCap(
      specOf({ ...mistral, sliding_window: 256, max_position_embeddings: 32768 }),
    );
    expect(cap.maxLength).toBe(256);
    expect(cap.reason).toContain("sliding_window 256 of MistralForCausalLM");
    expect(specOf({ ...mistral, sliding_window: null }).slidingWindow).toBeUndefined();
    expect(sequenceCap(specOf({ ...LLAMA, max_position_embeddings: 512 }))).toEqual({
      maxLength: 512,
      reason: "max_position_embeddings 512",
    });
  });
});

describe("rotary inverse frequencies", () => {
  it("default frequencies are theta^(-2i/d)", () => {
    const frequencies = defaultInverseFrequencies(8, 10000);
    expect(Array.from(frequencies)).toEqual(
      [1, 0.1, 0.01, 0.001].map((v) => expect.closeTo(v, 15)),
    );
  });

  it("llama3 scaling keeps, smooths and divides by band", () => {
    // head_dim 8, theta 1e4: wavelengths 2*pi / [1, 0.1, 0.01, 0.001] = 6.3, 62.8, 628, 6283.
    // With original_max_position_embeddings 1000, low_freq_factor 1 and high_freq_factor 4 the
    // bands are: below 250 kept, above 1000 divided by factor 8, and 628 smoothed with
    // s = (1000 / 628.3 - 1) / 3 = 0.19718, giving (1 - s) * 0.01 / 8 + s * 0.01 = 0.0029753525.
    const spec = specOf({
      ...LLAMA,
      rope_scaling: {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 1000,
      },
    });
    const frequencies = inverseFrequencies(spec);
    expect(frequencies[0]).toBeCloseTo(1, 15);
    expect(frequencies[1]).toBeCloseTo(0.1, 15);
    expect(frequencies[2]).toBeCloseTo(0.00297535250684695, 14);
    expect(frequencies[3]).toBeCloseTo(0.000125, 15);
  });

  it("llama3 scaling matches Llama 3.1 settings", () => {
    // Llama 3.1 uses factor 8, low 1, high 4 and original 8192, with head_dim 128 and theta 500000.
    const base = defaultInverseFrequencies(128, 500000);
    const scaled = llama3InverseFrequencies(base, {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    // Index 0: wavelength 2*pi, well below 8192 / 4, kept.
    expect(scaled[0]).toBe(base[0]);
    // Index 63: wavelength 2*pi / 500000^(-126/128), above 8192, divided by 8.
    expect(scaled[63]).toBeCloseTo(base[63] / 8, 20);
    for (let i = 0; i < 64; i++) {
      expect(scaled[i]).toBeLessThanOrEqual(base[i]);
      expect(scaled[i]).toBeGreaterThanOrEqual(base[i] / 8);
    }
  });
});
