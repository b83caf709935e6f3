import { copyFile, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import { CheckpointError } from "../../src/checkpoint/errors.ts";
import { createSafetensorsWriter } from "../../src/checkpoint/writer.ts";
import { parseCompressionOptions } from "../../src/compression/options.ts";
import { ModelError } from "../../src/model/errors.ts";
import { evaluatePerplexity, type PerplexityResult } from "../../src/model/evaluation.ts";
import { openModel } from "../../src/model/open.ts";
import { loadDecoderLayer } from "../../src/model/weights.ts";
import { compressCheckpoint } from "../../workers/pipeline/compress.ts";
import { expandArtifact } from "../../workers/pipeline/expand.ts";
import { FIXTURE, readEvalFixture } from "./helpers.ts";

let work: string;
let sequences: number[][];
let dense: PerplexityResult;

/** Compresses the fixture into `work/name` and returns the artifact directory. */
async function compressFixture(name: string, method: "pifa" | "svd", density: number) {
  const parsed = parseCompressionOptions({ method, density });
  if (!parsed.ok) throw new Error(parsed.issue.message);
  const outDir = path.join(work, name);
  const source = await openCheckpoint(FIXTURE);
  try {
    await compressCheckpoint({
      checkpoint: source,
      config: await readFile(path.join(FIXTURE, "config.json")),
      options: parsed.options,
      outDir,
    });
  } finally {
    await source.close();
  }
  return outDir;
}

/** Copies a checkpoint directory into `work/name` without the tensor `dropped`. */
async function copyWithout(directory: string, name: string, dropped: string): Promise<string> {
  const target = path.join(work, name);
  await mkdir(target);
  const source = await openCheckpoint(directory);
  try {
    const kept = source.tensors.filter((t) => t.name !== dropped);
    const writer = await createSafetensorsWriter({
      directory: target,
      tensors: kept.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] })),
    });
    for (const t of kept) await writer.writeTensor(t.name, await source.readTensorBytes(t));
    await writer.close();
  } finally {
    await source.close();
  }
  await copyFile(path.join(directory, "config.json"), path.join(target, "config.json"));
  return target;
}

async function evaluateDirectory(directory: string): Promise<PerplexityResult> {
  const { checkpoint, spec } = await openModel(directory);
  try {
    return await evaluatePerplexity(checkpoint, spec, sequences);
  } finally {
    await checkpoint.close();
  }
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "pifa-model-artifact-"));
  // Eight sequences keep the test fast. reference.test.ts checks the full set.
  sequences = (await readEvalFixture()).sequences.slice(0, 8);
  dense = await evaluateDirectory(FIXTURE);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("evaluatePerplexity on compressed artifacts", () => {
  it("PIFA at density 1.0 matches the dense model", async () => {
    const artifact = await compressFixture("pifa-1.0", "pifa", 1.0);
    const { checkpoint, spec } = await openModel(artifact);
    const layer = await loadDecoderLayer(checkpoint, spec, 0);
    await checkpoint.close();
    expect(layer.linears.q.kind).toBe("pifa");
    expect(layer.linears.gate.kind).toBe("pifa");

    const result = await evaluateDirectory(artifact);
    expect(result.tokens).toBe(dense.tokens);
    expect(Math.abs(result.meanNll - dense.meanNll)).toBeLessThan(1e-4);
  });

  it("PIFA at density 0.5 has a much higher perplexity", async () => {
    const artifact = await compressFixture("pifa-0.5", "pifa", 0.5);
    const result = await evaluateDirectory(artifact);
    expect(dense.perplexity).toBeLessThan(5);
    expect(result.perplexity).toBeGreaterThan(100);
  });

  for (const method of ["pifa", "svd"] as const) {
    it(`${method} artifact matches its expansion`, async () => {
      const artifact = await compressFixture(`${method}-expand`, method, 0.5);
      const expanded = path.join(work, `${method}-expanded`);
      const source = await openCheckpoint(artifact);
      await expandArtifact({ artifact: source, artifactDir: artifact, outDir: expanded }).finally(
        () => source.close(),
      );

      const { checkpoint, spec } = await openModel(artifact);
      const layer = await loadDecoderLayer(checkpoint, spec, 4);
      await checkpoint.close();
      expect(layer.linears.down.kind).toBe(method === "pifa" ? "pifa" : "low-rank");

      const compressed = await evaluateDirectory(artifact);
      const rebuilt = await evaluateDirectory(expanded);
      expect(Math.abs(compressed.meanNll - rebuilt.meanNll)).toBeLessThan(1e-4);
    });
  }

  it("rejects an artifact that lacks a factor tensor", async () => {
    const artifact = await compressFixture("broken", "svd", 0.5);
    const broken = await copyWithout(artifact, "broken-copy", "model.layers.1.mlp.up_proj.v");

    const error = await openModel(broken).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CheckpointError);
    expect((error as CheckpointError).code).toBe("INVALID_ARTIFACT");
    expect((error as CheckpointError).message).toContain("model.layers.1.mlp.up_proj");
  });

  it("rejects a checkpoint missing a layer weight", async () => {
    const broken = await copyWithout(
      FIXTURE,
      "missing-copy",
      "model.layers.3.self_attn.o_proj.weight",
    );

    const error = await openModel(broken).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelError);
    expect((error as ModelError).code).toBe("MISSING_WEIGHT");
    expect((error as ModelError).status).toBe(422);
    expect((error as ModelError).message).toContain("model.layers.3.self_attn.o_proj");
  });
});
