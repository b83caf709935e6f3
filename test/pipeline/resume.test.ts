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
import { directoryLayerStore, type LayerStore } from "../../workers/pipeline/layer-store.ts";

const FIXTURE = path.resolve("test/fixtures/stories260K");

let work: string;
let source: Checkpoint;
let config: Buffer;
let calibration: Int32Array[];

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "pifa-resume-"));
  source = await openCheckpoint(FIXTURE);
  config = await readFile(path.join(FIXTURE, "config.json"));
  calibration = parseTokenIdJson(
    await readFile("test/fixtures/tinystories/calibration-stories260K.json"),
    tokenLimits(modelSpecFromConfig(parseModelConfig(config))),
    "calibration",
    { sequences: 8, sequenceLength: 64 },
  );
});

afterAll(async () => {
  await source.close();
  await rm(work, { recursive: true, force: true });
});

/** Wraps a store to record which layers were saved, i.e. computed. */
function counting(store: LayerStore): LayerStore & { saved: string[] } {
  const saved: string[] = [];
  return {
    saved,
    load: (name) => store.load(name),
    async save(name, layer) {
      saved.push(name);
      await store.save(name, layer);
    },
  };
}

async function run(method: string, outDir: string, store?: LayerStore, stopAfter?: number) {
  const parsed = parseCompressionOptions({ method, density: 0.5 });
  if (!parsed.ok) throw new Error(parsed.issue.message);
  const controller = new AbortController();
  return compressCheckpoint({
    checkpoint: source,
    config,
    options: parsed.options,
    calibration: method === "pifa" ? undefined : calibration,
    outDir,
    layerStore: store,
    signal: controller.signal,
    onProgress: (p) => {
      if (stopAfter !== undefined && p.stage === "compressing" && p.layersDone >= stopAfter) {
        controller.abort();
      }
    },
  });
}

describe("resuming after an interrupted job", () => {
  for (const method of ["pifa", "mpifa"]) {
    it(`${method} resumes after the last saved layer with an identical artifact`, async () => {
      const reference = path.join(work, `${method}-reference`);
      await run(method, reference);

      const store = counting(directoryLayerStore(path.join(work, `${method}-layers`)));
      await expect(
        run(method, path.join(work, `${method}-first`), store, 10),
      ).rejects.toMatchObject({
        code: "CANCELLED",
      });
      const firstAttempt = [...store.saved];
      expect(firstAttempt.length).toBeGreaterThanOrEqual(10);
      expect(firstAttempt.length).toBeLessThan(35);

      store.saved.length = 0;
      const resumedDir = path.join(work, `${method}-resumed`);
      const { report } = await run(method, resumedDir, store);
      // No finished layer is computed twice.
      expect(store.saved.length).toBe(35 - firstAttempt.length);
      expect(store.saved.filter((name) => firstAttempt.includes(name))).toEqual([]);
      expect(report.layers).toHaveLength(35);
      const expected = await readFile(path.join(reference, "model.safetensors"));
      const actual = await readFile(path.join(resumedDir, "model.safetensors"));
      expect(actual.equals(expected)).toBe(true);
    });
  }

  it("rejects a saved layer that belongs to another name", async () => {
    const store = directoryLayerStore(path.join(work, "mixed"));
    const { report } = await run("pifa", path.join(work, "mixed-out"), store);
    const first = report.layers[0].name;
    const saved = await store.load(first);
    if (!saved) throw new Error("layer was not saved");
    await store.save(report.layers[1].name, saved);
    await expect(store.load(report.layers[1].name)).rejects.toThrow(/unreadable/);
  });
});
