import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Checkpoint, openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import { parseModelConfig } from "../../src/checkpoint/config.ts";
import { parseCompressionOptions } from "../../src/compression/options.ts";
import { parseTokenIdJson } from "../../src/data/token-ids.ts";
import { modelSpecFromConfig, tokenLimits } from "../../src/model/index.ts";
import { compressCheckpoint } from "../../workers/pipeline/compress.ts";
import type { CompressionReport } from "../../workers/pipeline/report.ts";

const FIXTURE = path.resolve("test/fixtures/stories260K");
const DATA = path.resolve("test/fixtures/tinystories");

let work: string;
let source: Checkpoint;
let config: Buffer;
let calibration: Int32Array[];
let evaluation: Int32Array[];
const reports = new Map<string, CompressionReport>();

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "pifa-data-aware-"));
  source = await openCheckpoint(FIXTURE);
  config = await readFile(path.join(FIXTURE, "config.json"));
  const spec = modelSpecFromConfig(parseModelConfig(config));
  // A slice of the fixture data keeps the suite fast on two cores; the
  // full-size comparison with the reference perplexities is bench/perplexity.ts.
  calibration = parseTokenIdJson(
    await readFile(path.join(DATA, "calibration-stories260K.json")),
    tokenLimits(spec),
    "calibration",
    { sequences: 32, sequenceLength: 128 },
  );
  evaluation = parseTokenIdJson(
    await readFile(path.join(DATA, "eval-stories260K.json")),
    tokenLimits(spec, 2),
    "evaluation",
    { sequences: 12, sequenceLength: 256 },
  );
});

afterAll(async () => {
  await source.close();
  await rm(work, { recursive: true, force: true });
});

async function run(method: string, density = 0.5): Promise<CompressionReport> {
  const parsed = parseCompressionOptions({ method, density });
  if (!parsed.ok) throw new Error(parsed.issue.message);
  const { report } = await compressCheckpoint({
    checkpoint: source,
    config,
    options: parsed.options,
    calibration,
    evaluation,
    outDir: path.join(work, `${method}-${density}`),
  });
  reports.set(method, report);
  return report;
}

describe("data-aware compression on stories260K", () => {
  it("evaluates the original model and every method on the same tokens", async () => {
    for (const method of ["pifa", "svd-llm", "m", "mpifa"]) {
      const report = await run(method);
      expect(report.totals.density).toBeLessThanOrEqual(0.5);
      expect(report.layers).toHaveLength(35);
      expect(report.evaluation?.sequences).toBe(12);
      expect(report.evaluation?.tokens).toBe(evaluation.reduce((sum, s) => sum + s.length - 1, 0));
      // Dense perplexity on this slice is near the fixture's 3.77.
      expect(report.evaluation?.original.perplexity).toBeGreaterThan(3);
      expect(report.evaluation?.original.perplexity).toBeLessThan(5);
    }
  });

  it("orders methods as data use predicts: mpifa < m < svd-llm < pifa", () => {
    const ppl = (method: string) =>
      reports.get(method)?.evaluation?.compressed.perplexity ?? Number.NaN;
    expect(ppl("mpifa")).toBeLessThan(ppl("m"));
    expect(ppl("m")).toBeLessThan(ppl("svd-llm"));
    expect(ppl("svd-llm")).toBeLessThan(ppl("pifa"));
    // Calibration cuts perplexity several-fold against data-free PIFA.
    expect(ppl("mpifa") * 5).toBeLessThan(ppl("pifa"));
  });

  it("records calibration usage and PIFA output for mpifa", async () => {
    const report = reports.get("mpifa") as CompressionReport;
    expect(report.calibration).toEqual({ sequences: 32, tokens: 32 * 128 });
    expect(report.layers.every((layer) => layer.representation === "pifa")).toBe(true);
    const artifact = await openCheckpoint(path.join(work, "mpifa-0.5"));
    expect(artifact.getTensor("model.layers.4.mlp.down_proj.pivots")?.dtype).toBe("I32");
    expect(artifact.getTensor("model.layers.4.mlp.down_proj.weight")).toBeUndefined();
    await artifact.close();
  });

  it("m stores a low-rank pair", () => {
    const report = reports.get("m") as CompressionReport;
    expect(report.layers.every((layer) => layer.representation === "low-rank")).toBe(true);
  });
});
