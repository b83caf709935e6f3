import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseModelConfig, readModelConfig } from "../../src/checkpoint/config.ts";
import { expectCheckpointError, FIXTURE_DIR, withTempDir } from "./helpers.ts";

describe("readModelConfig", () => {
  it("parses the stories260K config", async () => {
    const config = await readModelConfig(FIXTURE_DIR);
    expect(config.architectures).toEqual(["LlamaForCausalLM"]);
    expect(config.model_type).toBe("llama");
    expect(config.hidden_size).toBe(64);
    expect(config.intermediate_size).toBe(172);
    expect(config.num_hidden_layers).toBe(5);
    expect(config.num_attention_heads).toBe(8);
    expect(config.num_key_value_heads).toBe(4);
    expect(config.vocab_size).toBe(512);
    expect(config.rms_norm_eps).toBe(1e-5);
    expect(config.rope_theta).toBe(10000);
    expect(config.tie_word_embeddings).toBe(true);
    expect(config.torch_dtype).toBe("float32");
    // Unknown keys pass through.
    expect(config.hidden_act).toBe("silu");
    expect(config.mlp_bias).toBe(false);
  });

  it("missing config.json", async () => {
    await withTempDir(async (directory) => {
      const error = await expectCheckpointError(readModelConfig(directory), "MISSING_CONFIG");
      expect(error.message).toContain("config.json is missing");
    });
  });

  it("config.json that is not JSON", async () => {
    await withTempDir(async (directory) => {
      await writeFile(join(directory, "config.json"), "{hidden_size: 64}");
      const error = await expectCheckpointError(readModelConfig(directory), "INVALID_CONFIG");
      expect(error.message).toContain("not valid JSON");
    });
  });
});

describe("parseModelConfig", () => {
  it("accepts another architecture", () => {
    const config = parseModelConfig('{"model_type":"gpt2","n_embd":768,"n_layer":12}');
    expect(config.model_type).toBe("gpt2");
    expect(config.n_embd).toBe(768);
    expect(config.hidden_size).toBeUndefined();
  });

  it("accepts Llama 3 rope scaling", () => {
    const config = parseModelConfig(
      JSON.stringify({
        rope_scaling: {
          rope_type: "llama3",
          factor: 8,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 8192,
        },
        sliding_window: null,
        head_dim: 128,
        attention_bias: false,
        max_position_embeddings: 131072,
      }),
    );
    expect(config.rope_scaling?.rope_type).toBe("llama3");
    expect(config.rope_scaling?.original_max_position_embeddings).toBe(8192);
    expect(config.sliding_window).toBeNull();
    expect(config.head_dim).toBe(128);
  });

  it("accepts null and legacy rope_scaling", () => {
    expect(parseModelConfig('{"rope_scaling":null}').rope_scaling).toBeNull();
    expect(
      parseModelConfig('{"rope_scaling":{"type":"linear","factor":2}}').rope_scaling?.type,
    ).toBe("linear");
  });

  it.each([
    ["a string hidden_size", { hidden_size: "64" }, "hidden_size"],
    ["a fractional layer count", { num_hidden_layers: 2.5 }, "num_hidden_layers"],
    ["a zero head count", { num_attention_heads: 0 }, "num_attention_heads"],
    ["a negative rms_norm_eps", { rms_norm_eps: -1e-5 }, "rms_norm_eps"],
    ["a string tie_word_embeddings", { tie_word_embeddings: "yes" }, "tie_word_embeddings"],
    ["a non-positive rope factor", { rope_scaling: { factor: 0 } }, "rope_scaling.factor"],
    ["a string architectures", { architectures: "LlamaForCausalLM" }, "architectures"],
    [
      "heads not divisible by KV heads",
      { num_attention_heads: 8, num_key_value_heads: 3 },
      "num_key_value_heads",
    ],
    [
      "hidden size not divisible by heads",
      { hidden_size: 65, num_attention_heads: 8 },
      "num_attention_heads",
    ],
  ])("rejects %s", async (_kind, value, field) => {
    const error = await expectCheckpointError(
      () => parseModelConfig(JSON.stringify(value)),
      "INVALID_CONFIG",
    );
    expect(error.status).toBe(422);
    expect(error.message).toContain(`${field}:`);
  });

  it("accepts explicit head_dim", () => {
    expect(
      parseModelConfig('{"hidden_size":65,"num_attention_heads":8,"head_dim":8}').head_dim,
    ).toBe(8);
  });

  it("rejects a JSON array", async () => {
    const error = await expectCheckpointError(() => parseModelConfig("[]"), "INVALID_CONFIG");
    expect(error.message).toContain("(root)");
  });

  it("rejects a repeated key", async () => {
    const error = await expectCheckpointError(
      () => parseModelConfig('{"hidden_size":64,"hidden_size":128}'),
      "DUPLICATE_KEY",
    );
    expect(error.message).toContain('"hidden_size"');
  });

  it("rejects bytes that are not UTF-8", async () => {
    await expectCheckpointError(
      () => parseModelConfig(Uint8Array.from([0x7b, 0xff, 0x7d])),
      "INVALID_CONFIG",
    );
  });
});
