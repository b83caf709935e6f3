import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Checkpoint, openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import { parseCompressionOptions } from "../../src/compression/options.ts";
import { compressCheckpoint, validateForCompression } from "../../workers/pipeline/compress.ts";
import { expandArtifact } from "../../workers/pipeline/expand.ts";
import type { CompressionReport } from "../../workers/pipeline/report.ts";

const FIXTURE = path.resolve("test/fixtures/stories260K");

function options(input: Record<string, unknown>) {
  const parsed = parseCompressionOptions(input);
  if (!parsed.ok) throw new Error(parsed.issue.message);
  return parsed.options;
}

/** `||W - W_hat|| / ||W||` in float64 over two tensors of one name. */
async function relativeError(source: Checkpoint, rebuilt: Checkpoint, name: string) {
  const w = await source.readTensorFloat32(name);
  const hat = await rebuilt.readTensorFloat32(name);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < w.length; i++) {
    diff += (w[i] - hat[i]) ** 2;
    norm += w[i] ** 2;
  }
  return Math.sqrt(diff / norm);
}

let work: string;
let source: Checkpoint;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "pifa-pipeline-"));
  source = await openCheckpoint(FIXTURE);
});

afterAll(async () => {
  await source.close();
  await rm(work, { recursive: true, force: true });
});

describe("compressCheckpoint on stories260K", () => {
  for (const method of ["pifa", "svd"] as const) {
    it(`${method} at density 0.5 matches its report after expand`, async () => {
      const outDir = path.join(work, method);
      const config = await readFile(path.join(FIXTURE, "config.json"));
      const progress: number[] = [];
      const { report, files } = await compressCheckpoint({
        checkpoint: source,
        config,
        options: options({ method, density: 0.5 }),
        outDir,
        onProgress: (p) => {
          if (p.stage === "compressing") progress.push(p.layersDone);
        },
      });
      expect(files).toEqual(["model.safetensors", "config.json", "report.json"]);
      expect(progress).toEqual(Array.from({ length: 35 }, (_, i) => i + 1));
      expect(report.layers).toHaveLength(35);
      expect(report.totals.density).toBeLessThanOrEqual(0.5);
      expect(report.totals.density).toBeGreaterThan(0.45);
      expect(await readFile(path.join(outDir, "config.json"))).toEqual(config);
      const onDisk = JSON.parse(
        await readFile(path.join(outDir, "report.json"), "utf8"),
      ) as CompressionReport;
      expect(onDisk.totals.params_after).toBe(report.totals.params_after);

      const artifact = await openCheckpoint(outDir);
      const metadata = artifact.shards.get("model.safetensors")?.metadata ?? {};
      expect(metadata["pifa.method"]).toBe(method);
      expect(metadata["pifa.format_version"]).toBe("1");
      // Embeddings and norms are copied byte for byte.
      for (const name of ["model.embed_tokens.weight", "model.norm.weight"]) {
        expect(await artifact.readTensorBytes(name)).toEqual(await source.readTensorBytes(name));
      }
      expect(artifact.getTensor("model.layers.0.self_attn.q_proj.weight")).toBeUndefined();
      const suffixes = method === "pifa" ? ["pivot_rows", "coefficients", "pivots"] : ["u", "v"];
      for (const suffix of suffixes) {
        expect(artifact.getTensor(`model.layers.0.self_attn.q_proj.${suffix}`)).toBeDefined();
      }

      const denseDir = path.join(work, `${method}-dense`);
      await expandArtifact({ artifact, artifactDir: outDir, outDir: denseDir });
      await artifact.close();
      const dense = await openCheckpoint(denseDir);
      expect(dense.tensors.map((t) => t.name)).toEqual(source.tensors.map((t) => t.name));
      for (const layer of report.layers) {
        const error = await relativeError(source, dense, layer.name);
        expect(Math.abs(error - layer.relative_error)).toBeLessThan(1e-5);
        expect(layer.relative_error).toBeGreaterThan(0);
        expect(layer.relative_error).toBeLessThan(1);
        if (method === "pifa") {
          expect(layer.params_after).toBe(
            layer.rank * layer.shape[1] + (layer.shape[0] - layer.rank) * layer.rank,
          );
        }
      }
      await dense.close();
    });
  }

  it("pifa stores fewer values than svd at the same rank", async () => {
    const pifaReport = JSON.parse(await readFile(path.join(work, "pifa", "report.json"), "utf8"));
    const svdReport = JSON.parse(await readFile(path.join(work, "svd", "report.json"), "utf8"));
    // At the same density PIFA affords a higher rank, so its error is lower.
    expect(pifaReport.layers[0].rank).toBeGreaterThan(svdReport.layers[0].rank);
    expect(pifaReport.layers[0].relative_error).toBeLessThan(svdReport.layers[0].relative_error);
  });

  it("writes shards with an index and bf16 factors", async () => {
    const outDir = path.join(work, "sharded");
    const { files, report } = await compressCheckpoint({
      checkpoint: source,
      options: options({
        method: "pifa",
        density: 0.7,
        dtype: "bf16",
        shardBytes: 1 << 20,
        rankMultiple: 8,
      }),
      outDir,
    });
    expect(files).toContain("report.json");
    for (const layer of report.layers) expect(layer.rank % 8).toBe(0);
    expect(report.totals.density).toBeLessThanOrEqual(0.7);
    const artifact = await openCheckpoint(outDir);
    expect(artifact.getTensor("model.layers.1.mlp.up_proj.pivot_rows")?.dtype).toBe("BF16");
    expect(artifact.getTensor("model.layers.1.mlp.up_proj.pivots")?.dtype).toBe("I32");
    await artifact.close();
  });

  it("leaves no files behind when cancelled", async () => {
    const outDir = path.join(work, "cancelled");
    const controller = new AbortController();
    await expect(
      compressCheckpoint({
        checkpoint: source,
        options: options({ method: "pifa", density: 0.5 }),
        outDir,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.layersDone === 3) controller.abort();
        },
      }),
    ).rejects.toMatchObject({ code: "CANCELLED" });
    expect(await readdir(outDir)).toEqual([]);
  });

  it("rejects target globs that match nothing", () => {
    expect(() =>
      validateForCompression(
        source,
        options({ method: "pifa", density: 0.5, targets: ["nothing.*"] }),
      ),
    ).toThrow(expect.objectContaining({ code: "NO_TARGETS" }));
  });

  it("rejects a data-aware method without calibration data", () => {
    expect(() =>
      validateForCompression(source, options({ method: "mpifa", density: 0.5 })),
    ).toThrow(expect.objectContaining({ code: "MISSING_INPUT", field: "calibration" }));
  });
});
