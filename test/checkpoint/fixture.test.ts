import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import { assertFinite } from "../../src/checkpoint/finite.ts";
import { selectTargets } from "../../src/checkpoint/targets.ts";
import { expectCheckpointError, FIXTURE_DIR } from "./helpers.ts";

describe("stories260K fixture", () => {
  it("opens with 47 F32 tensors", async () => {
    const checkpoint = await openCheckpoint(FIXTURE_DIR);
    try {
      expect([...checkpoint.shards.keys()]).toEqual(["model.safetensors"]);
      expect(checkpoint.tensors).toHaveLength(1 + 5 * 9 + 1);
      expect(checkpoint.tensors.every((t) => t.dtype === "F32")).toBe(true);
      expect({ ...checkpoint.metadata }).toEqual({ format: "pt" });
      expect(checkpoint.getTensor("model.embed_tokens.weight")?.shape).toEqual([512, 64]);
      expect(checkpoint.getTensor("lm_head.weight")).toBeUndefined();
    } finally {
      await checkpoint.close();
    }
  });

  it("has 35 default targets and no output head", async () => {
    const checkpoint = await openCheckpoint(FIXTURE_DIR);
    try {
      const targets = selectTargets(checkpoint.tensors, { metadata: checkpoint.metadata });
      expect(targets).toHaveLength(5 * 7);
      const names = targets.map((t) => t.name);
      expect(
        names.some(
          (name) => name.includes("embed") || name.includes("lm_head") || name.includes("norm"),
        ),
      ).toBe(false);
      for (let layer = 0; layer < 5; layer++) {
        for (const module of [
          "self_attn.q_proj",
          "self_attn.k_proj",
          "self_attn.v_proj",
          "self_attn.o_proj",
        ]) {
          expect(names).toContain(`model.layers.${layer}.${module}.weight`);
        }
        for (const module of ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]) {
          expect(names).toContain(`model.layers.${layer}.${module}.weight`);
        }
      }
      expect(checkpoint.getTensor("model.layers.0.self_attn.k_proj.weight")?.shape).toEqual([
        32, 64,
      ]);
      expect(checkpoint.getTensor("model.layers.0.mlp.down_proj.weight")?.shape).toEqual([64, 172]);
    } finally {
      await checkpoint.close();
    }
  });

  it("reads finite F32 file bytes", async () => {
    const whole = readFileSync(join(FIXTURE_DIR, "model.safetensors"));
    const checkpoint = await openCheckpoint(FIXTURE_DIR);
    try {
      const info = checkpoint.getTensor("model.layers.0.self_attn.q_proj.weight");
      if (info === undefined)
        throw new Error("fixture lacks model.layers.0.self_attn.q_proj.weight");
      const data = await checkpoint.readTensorFloat32(info); // [64, 64]
      expect(data.length).toBe(64 * 64);
      expect(data[0]).toBe(whole.readFloatLE(info.byteOffset));
      expect(data[4095]).toBe(whole.readFloatLE(info.byteOffset + 4 * 4095));
      assertFinite(info.name, data, info.shape);

      let sumOfSquares = 0;
      for (const value of data) sumOfSquares += value * value;
      expect(sumOfSquares).toBeGreaterThan(0);

      const norm = await checkpoint.readTensorFloat32("model.norm.weight");
      expect(norm.length).toBe(64);
    } finally {
      await checkpoint.close();
    }
  });
});

describe("assertFinite", () => {
  it("names tensor and first bad index", async () => {
    const data = new Float32Array([1, 2, 3, Number.NaN, Number.POSITIVE_INFINITY, 6]); // [2, 3]
    const error = await expectCheckpointError(
      () => assertFinite("model.layers.0.mlp.up_proj.weight", data, [2, 3]),
      "NON_FINITE_TENSOR",
    );
    expect(error.status).toBe(422);
    expect(error.message).toContain(
      'tensor "model.layers.0.mlp.up_proj.weight" contains NaN at index 3 (row 1, column 0 of shape [2, 3])',
    );
  });

  it("reports infinity without a shape", async () => {
    const error = await expectCheckpointError(
      () => assertFinite("w", new Float64Array([0, -Infinity])),
      "NON_FINITE_TENSOR",
    );
    expect(error.message).toContain("contains -Infinity at index 1:");
  });

  it("accepts finite data", () => {
    expect(() => assertFinite("w", new Float32Array([0, -1, 3.4e38]))).not.toThrow();
  });
});
