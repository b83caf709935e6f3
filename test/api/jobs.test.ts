/**
 * End-to-end job submission over real HTTP: a real Redis, local storage in a temporary directory,
 * the API on loopback and an in-process worker running the real pipeline.
 */

import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import { openArtifact, rebuildPifaLayer, relativeError } from "./artifact-check.ts";
import {
  FIXTURE_DIR,
  fixtureParts,
  json,
  postJson,
  postUpload,
  readEvents,
  sha256,
  waitForFinalStatus,
} from "./client.ts";
import { Harness } from "./harness.ts";
import { writeSyntheticLlama } from "./synthetic.ts";

let harness: Harness;
let url: string;

beforeAll(async () => {
  harness = await Harness.start();
  url = await harness.startApi();
  harness.startWorker();
});

afterAll(async () => {
  await harness.stop();
});

const PIFA_HALF = { method: "pifa", density: 0.5 };

async function submitFixture(options: unknown = PIFA_HALF, headers?: Record<string, string>) {
  return postUpload(url, { options, files: await fixtureParts(), headers });
}

/** Keys under the storage root, whatever job they belong to. */
async function storedKeys(): Promise<string[]> {
  return (await harness.storage.list("")).map((object) => object.key);
}

describe("fixture job", () => {
  let jobId: string;
  let job: Record<string, unknown> & {
    artifacts: Array<{ name: string; size: number; sha256: string }>;
  };

  beforeAll(async () => {
    const response = await submitFixture();
    expect(response.status).toBe(202);
    const body = (await json(response)) as { id: string };
    jobId = body.id;
    await waitForFinalStatus(url, jobId);
    job = await json(await fetch(`${url}/v1/jobs/${jobId}`));
  });

  test("submission returns 202 with Location", async () => {
    const response = await submitFixture();
    const body = (await json(response)) as {
      id: string;
      status: string;
      progress: { stage: string };
    };
    expect(response.status).toBe(202);
    expect(response.headers.get("location")).toBe(`/v1/jobs/${body.id}`);
    expect(body.status).toBe("queued");
    expect(body.progress.stage).toBe("queued");
    await waitForFinalStatus(url, body.id);
  });

  test("events replay from start to succeeded", async () => {
    const { events, ended } = await readEvents(url, jobId);
    expect(ended).toBe(true);
    const statuses = events
      .filter((event) => event.event === "status")
      .map((event) => (event.data as { status: string }).status);
    expect(statuses).toEqual(["queued", "running", "succeeded"]);
    const progress = events.filter((event) => event.event === "progress");
    const layerEvents = progress.filter(
      (event) => (event.data as { stage: string }).stage === "compressing",
    );
    expect(layerEvents).toHaveLength(35);
    const lastLayer = layerEvents.at(-1)?.data as { layersDone: number } | undefined;
    expect(lastLayer?.layersDone).toBe(35);
    for (const event of events) expect(event.id).toMatch(/^\d+-\d+$/);
  });

  test("job record is complete", () => {
    expect(job.status).toBe("succeeded");
    expect(job.startedAt).toEqual(expect.any(String));
    expect(job.finishedAt).toEqual(expect.any(String));
    expect(job.progress).toEqual({ stage: "done", layersDone: 35, layersTotal: 35, percent: 100 });
    expect(job.artifacts.map((artifact) => artifact.name).sort()).toEqual([
      "config.json",
      "model.safetensors",
      "report.json",
    ]);
    expect(job.error).toBeUndefined();
  });

  test("artifacts download with matching sha256", async () => {
    const list = await json(await fetch(`${url}/v1/jobs/${jobId}/artifacts`));
    expect(list.artifacts).toEqual(job.artifacts);
    for (const artifact of job.artifacts) {
      const response = await fetch(`${url}/v1/jobs/${jobId}/artifacts/${artifact.name}`);
      expect(response.status).toBe(200);
      expect(response.headers.get("etag")).toBe(`"${artifact.sha256}"`);
      expect(response.headers.get("content-length")).toBe(String(artifact.size));
      const bytes = new Uint8Array(await response.arrayBuffer());
      expect(bytes.byteLength).toBe(artifact.size);
      expect(sha256(bytes)).toBe(artifact.sha256);
    }
  });

  test("report density and errors match the artifact", async () => {
    const report = await json(await fetch(`${url}/v1/jobs/${jobId}/artifacts/report.json`));
    expect(report).toEqual(job.report);
    expect(report.totals.density).toBeLessThanOrEqual(0.5);
    expect(report.totals.layers).toBe(35);

    const modelBytes = new Uint8Array(
      await (await fetch(`${url}/v1/jobs/${jobId}/artifacts/model.safetensors`)).arrayBuffer(),
    );
    const artifact = await openArtifact(modelBytes);
    const original = await openCheckpoint(FIXTURE_DIR);
    try {
      for (const layer of report.layers as Array<{
        name: string;
        shape: [number, number];
        relative_error: number;
      }>) {
        expect(Number.isFinite(layer.relative_error)).toBe(true);
        const prefix = layer.name.replace(/\.weight$/, "");
        const rebuilt = await rebuildPifaLayer(artifact, prefix, layer.shape[0], layer.shape[1]);
        const error = relativeError(await original.readTensorFloat32(layer.name), rebuilt);
        expect(error).toBeCloseTo(layer.relative_error, 4);
      }
    } finally {
      await original.close();
    }
  });

  test("config.json artifact is the uploaded one", async () => {
    const downloaded = await (await fetch(`${url}/v1/jobs/${jobId}/artifacts/config.json`)).text();
    const parts = await fixtureParts();
    expect(downloaded).toBe(Buffer.from(parts[1].bytes).toString("utf8"));
  });

  test("range request returns 206", async () => {
    const artifact = job.artifacts.find((candidate) => candidate.name === "model.safetensors");
    if (!artifact) throw new Error("model.safetensors missing");
    const whole = new Uint8Array(
      await (await fetch(`${url}/v1/jobs/${jobId}/artifacts/model.safetensors`)).arrayBuffer(),
    );

    const middle = await fetch(`${url}/v1/jobs/${jobId}/artifacts/model.safetensors`, {
      headers: { range: "bytes=100-1099" },
    });
    expect(middle.status).toBe(206);
    expect(middle.headers.get("content-range")).toBe(`bytes 100-1099/${artifact.size}`);
    expect(middle.headers.get("content-length")).toBe("1000");
    expect(new Uint8Array(await middle.arrayBuffer())).toEqual(whole.subarray(100, 1100));

    const suffix = await fetch(`${url}/v1/jobs/${jobId}/artifacts/model.safetensors`, {
      headers: { range: "bytes=-16" },
    });
    expect(suffix.status).toBe(206);
    expect(new Uint8Array(await suffix.arrayBuffer())).toEqual(
      whole.subarray(whole.byteLength - 16),
    );

    const open = await fetch(`${url}/v1/jobs/${jobId}/artifacts/model.safetensors`, {
      headers: { range: `bytes=${artifact.size - 10}-` },
    });
    expect(open.status).toBe(206);
    expect(open.headers.get("content-range")).toBe(
      `bytes ${artifact.size - 10}-${artifact.size - 1}/${artifact.size}`,
    );
  });

  test("range past the end returns 416", async () => {
    const artifact = job.artifacts.find((candidate) => candidate.name === "model.safetensors");
    const response = await fetch(`${url}/v1/jobs/${jobId}/artifacts/model.safetensors`, {
      headers: { range: `bytes=${artifact?.size}-` },
    });
    expect(response.status).toBe(416);
    expect(response.headers.get("content-range")).toBe(`bytes */${artifact?.size}`);
    expect((await json(response)).error.code).toBe("RANGE_NOT_SATISFIABLE");
  });

  test("HEAD returns headers without body", async () => {
    const artifact = job.artifacts.find((candidate) => candidate.name === "model.safetensors");
    const response = await fetch(`${url}/v1/jobs/${jobId}/artifacts/model.safetensors`, {
      method: "HEAD",
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe(String(artifact?.size));
    expect(response.headers.get("etag")).toBe(`"${artifact?.sha256}"`);
    expect((await response.arrayBuffer()).byteLength).toBe(0);
    const partial = await fetch(`${url}/v1/jobs/${jobId}/artifacts/model.safetensors`, {
      method: "HEAD",
      headers: { range: "bytes=0-99" },
    });
    expect(partial.status).toBe(206);
    expect(partial.headers.get("content-length")).toBe("100");
  });

  test("missing artifact object gives 404", async () => {
    const response = await postUpload(url, { options: PIFA_HALF, files: await fixtureParts() });
    const { id } = await json(response);
    await waitForFinalStatus(url, id);
    await harness.storage.delete(`jobs/${id}/artifacts/config.json`);
    const download = await fetch(`${url}/v1/jobs/${id}/artifacts/config.json`);
    expect(download.status).toBe(404);
    expect(download.headers.get("content-type")).toContain("application/json");
    expect((await json(download)).error.code).toBe("ARTIFACT_NOT_FOUND");
  });

  test("If-None-Match returns 304", async () => {
    const artifact = job.artifacts[0];
    const response = await fetch(`${url}/v1/jobs/${jobId}/artifacts/${artifact.name}`, {
      headers: { "if-none-match": `"${artifact.sha256}"` },
    });
    expect(response.status).toBe(304);
    expect(response.headers.get("etag")).toBe(`"${artifact.sha256}"`);
    const stale = await fetch(`${url}/v1/jobs/${jobId}/artifacts/${artifact.name}`, {
      headers: { "if-none-match": '"0000"' },
    });
    expect(stale.status).toBe(200);
    await stale.arrayBuffer();
  });

  test("If-Range with another tag ignores Range", async () => {
    const response = await fetch(`${url}/v1/jobs/${jobId}/artifacts/report.json`, {
      headers: { range: "bytes=0-9", "if-range": '"other"' },
    });
    expect(response.status).toBe(200);
    expect((await response.arrayBuffer()).byteLength).toBe(
      job.artifacts.find((a) => a.name === "report.json")?.size,
    );
  });

  test.each([["missing.bin"], ["%2E%2E"], ["model.safetensors%00"], ["..%2Freport.json"]])(
    "artifact name %s returns 404",
    async (name) => {
      const response = await fetch(`${url}/v1/jobs/${jobId}/artifacts/${name}`);
      expect(response.status).toBe(404);
      // An encoded slash splits the path, so no route matches; other names fail the list check.
      expect(["ARTIFACT_NOT_FOUND", "ROUTE_NOT_FOUND"]).toContain(
        (await json(response)).error.code,
      );
    },
  );
});

describe("rejected submissions", () => {
  test.each([
    [{ method: "pifa", density: 2 }, "options.density"],
    [{ method: "pifa", density: 0 }, "options.density"],
    [{ method: "zip", density: 0.5 }, "options.method"],
    [{ method: "pifa" }, "options.density"],
    [{ method: "pifa", density: 0.5, rankMultiple: 1.5 }, "options.rankMultiple"],
    [{ method: "pifa", density: 0.5, colour: "red" }, "options"],
    ["{not json", "options"],
    [[1, 2], "options"],
  ])("options %j give 400 naming %s", async (options, field) => {
    const before = await storedKeys();
    const response = await submitFixture(options);
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("INVALID_OPTIONS");
    expect(body.error.field).toBe(field);
    expect(body.error.message).toEqual(expect.any(String));
    expect(await storedKeys()).toEqual(before);
  });

  test("data-aware method without calibration gives 400", async () => {
    const before = await storedKeys();
    const response = await submitFixture({ method: "svd-llm", density: 0.5 });
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("MISSING_INPUT");
    expect(body.error.field).toBe("calibration");
    expect(await storedKeys()).toEqual(before);
  });

  test("calibration with a data-free method gives 400", async () => {
    const before = await storedKeys();
    const response = await postUpload(url, {
      options: PIFA_HALF,
      files: [
        ...(await fixtureParts()),
        {
          part: "calibration",
          filename: "calibration.json",
          bytes: new TextEncoder().encode('{"sequences":[[1,2,3]]}'),
        },
      ],
    });
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("UNUSED_INPUT");
    expect(body.error.field).toBe("calibration");
    expect(await storedKeys()).toEqual(before);
  });

  test("invalid calibration tokens give 422", async () => {
    const before = await storedKeys();
    const response = await postUpload(url, {
      options: { method: "svd-llm", density: 0.5 },
      files: [
        ...(await fixtureParts()),
        {
          part: "calibration",
          filename: "calibration.json",
          bytes: Buffer.from('{"sequences": [[1, 9999]]}'),
        },
      ],
    });
    expect(response.status).toBe(422);
    const body = await json(response);
    expect(body.error.code).toBe("INVALID_TOKENS");
    expect(body.error.field).toBe("calibration.sequences[0][1]");
    expect(body.error.message).toContain("9999");
    expect(await storedKeys()).toEqual(before);
  });

  test("malformed checkpoint gives 422 and stores nothing", async () => {
    const before = await storedKeys();
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(1n << 40n); // declares a 1 TiB header
    const parts = await fixtureParts();
    const response = await postUpload(url, {
      options: PIFA_HALF,
      files: [
        {
          part: "checkpoint",
          filename: "model.safetensors",
          bytes: Buffer.concat([header, Buffer.alloc(64)]),
        },
        parts[1],
      ],
    });
    expect(response.status).toBe(422);
    const body = await json(response);
    expect(body.error.code).toBe("HEADER_TOO_LARGE");
    expect(body.error.message).not.toMatch(/\n\s+at /);
    expect(await storedKeys()).toEqual(before);
  });

  test("invalid config.json gives 422", async () => {
    const before = await storedKeys();
    const parts = await fixtureParts();
    const response = await postUpload(url, {
      options: PIFA_HALF,
      files: [
        parts[0],
        { part: "config", filename: "config.json", bytes: Buffer.from('{"hidden_size": -1}') },
      ],
    });
    expect(response.status).toBe(422);
    expect((await json(response)).error.code).toBe("INVALID_CONFIG");
    expect(await storedKeys()).toEqual(before);
  });

  test("target glob matching nothing gives 400 NO_TARGETS", async () => {
    const response = await submitFixture({ ...PIFA_HALF, targets: ["nothing.*"] });
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe("NO_TARGETS");
  });

  test("empty targets list gives 400 naming targets", async () => {
    const response = await submitFixture({ ...PIFA_HALF, targets: [] });
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("INVALID_OPTIONS");
    expect(body.error.field).toBe("options.targets");
  });

  test.each([
    [
      "options",
      (parts: Awaited<ReturnType<typeof fixtureParts>>) => ({ options: undefined, files: parts }),
    ],
    [
      "config",
      (parts: Awaited<ReturnType<typeof fixtureParts>>) => ({
        options: PIFA_HALF,
        files: [parts[0]],
      }),
    ],
    [
      "checkpoint",
      (parts: Awaited<ReturnType<typeof fixtureParts>>) => ({
        options: PIFA_HALF,
        files: [parts[1]],
      }),
    ],
  ])("missing %s part gives 400", async (field, build) => {
    const before = await storedKeys();
    const response = await postUpload(url, build(await fixtureParts()));
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("MISSING_PART");
    expect(body.error.field).toBe(field);
    expect(await storedKeys()).toEqual(before);
  });

  test("unknown part gives 400", async () => {
    const parts = await fixtureParts();
    const response = await postUpload(url, {
      options: PIFA_HALF,
      files: [...parts, { part: "weights", filename: "x.bin", bytes: Buffer.from("x") }],
    });
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("UNEXPECTED_PART");
    expect(body.error.field).toBe("weights");
  });

  test("unsafe shard name gives 422", async () => {
    const before = await storedKeys();
    const parts = await fixtureParts();
    const response = await postUpload(url, {
      options: PIFA_HALF,
      files: [{ ...parts[0], filename: "c:model.safetensors" }, parts[1]],
    });
    expect(response.status).toBe(422);
    expect((await json(response)).error.code).toBe("UNSAFE_SHARD_NAME");
    expect(await storedKeys()).toEqual(before);
  });

  test("text body gives 415", async () => {
    const response = await fetch(`${url}/v1/jobs`, {
      method: "POST",
      body: "hello",
      headers: { "content-type": "text/plain" },
    });
    expect(response.status).toBe(415);
    expect((await json(response)).error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
  });

  test("form-encoded body gives 415 naming the types", async () => {
    const response = await fetch(`${url}/v1/jobs`, {
      method: "POST",
      body: "options=1",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(response.status).toBe(415);
    const body = await json(response);
    expect(body.error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
    expect(body.error.message).toContain("multipart/form-data");
  });

  test("invalid JSON body gives 400 with an example", async () => {
    const response = await fetch(`${url}/v1/jobs`, {
      method: "POST",
      body: "{bad",
      headers: { "content-type": "application/json" },
    });
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("INVALID_REQUEST");
    expect(body.error.message).toContain("not valid JSON");
  });

  test("index part beside model.safetensors gives 400", async () => {
    const before = await storedKeys();
    const parts = await fixtureParts();
    const response = await postUpload(url, {
      options: PIFA_HALF,
      files: [
        ...parts,
        { part: "index", filename: "index.json", bytes: new TextEncoder().encode("{bad") },
      ],
    });
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("UNEXPECTED_PART");
    expect(body.error.field).toBe("index");
    expect(await storedKeys()).toEqual(before);
  });
});

describe("data-aware job", () => {
  test("svd-llm with calibration and evaluation succeeds", async () => {
    const tinystories = join(FIXTURE_DIR, "..", "tinystories");
    const response = await postUpload(url, {
      options: { method: "svd-llm", density: 0.5, calibrationSequences: 4, sequenceLength: 64 },
      files: [
        ...(await fixtureParts()),
        {
          part: "calibration",
          filename: "calibration.json",
          bytes: await readFile(join(tinystories, "calibration-stories260K.json")),
        },
        {
          part: "evaluation",
          filename: "eval.json",
          bytes: await readFile(join(tinystories, "eval-stories260K.json")),
        },
      ],
    });
    expect(response.status).toBe(202);
    const { id } = await json(response);
    const final = await waitForFinalStatus(url, id);
    expect(final.status).toBe("succeeded");
    const job = await json(await fetch(`${url}/v1/jobs/${id}`));
    expect(job.report.calibration).toEqual({ sequences: 4, tokens: 4 * 64 });
    expect(job.report.totals.density).toBeLessThanOrEqual(0.5);
    expect(Number.isFinite(job.report.evaluation.compressed.perplexity)).toBe(true);
    expect(job.report.evaluation.original.perplexity).toBeLessThan(
      job.report.evaluation.compressed.perplexity,
    );
  });
});

describe("sharded upload", () => {
  test("shards with an index compress", async () => {
    const directory = join(harness.storageRoot ?? "", "..", `shards-${process.pid}`);
    await mkdir(directory, { recursive: true });
    const files = await writeSyntheticLlama(directory, {
      layers: 2,
      hidden: 64,
      intermediate: 128,
      vocab: 256,
      maxShardBytes: 100_000,
      seed: 7,
    });
    const { readFile, rm } = await import("node:fs/promises");
    const shards = files.filter((name) => name.endsWith(".safetensors"));
    expect(shards.length).toBeGreaterThan(1);
    const parts = [
      ...(await Promise.all(
        shards.map(async (name) => ({
          part: "checkpoint",
          filename: name,
          bytes: await readFile(join(directory, name)),
        })),
      )),
      {
        part: "index",
        filename: "index.json",
        bytes: await readFile(join(directory, "model.safetensors.index.json")),
      },
      {
        part: "config",
        filename: "config.json",
        bytes: await readFile(join(directory, "config.json")),
      },
    ];
    await rm(directory, { recursive: true, force: true });

    const response = await postUpload(url, {
      options: { method: "svd", density: 0.5 },
      files: parts,
    });
    expect(response.status).toBe(202);
    const { id } = await json(response);
    const final = await waitForFinalStatus(url, id);
    expect(final.status).toBe("succeeded");

    // Storage keys are generated, never the client's file names.
    const inputs = (await harness.storage.list(`jobs/${id}/inputs/`)).map((object) =>
      object.key.split("/").at(-1),
    );
    expect(inputs.sort()).toEqual(
      [...shards.map((_, i) => `checkpoint-${i}.safetensors`), "config.json", "index.json"].sort(),
    );
  });

  test("shards without an index give 400", async () => {
    const parts = await fixtureParts();
    const response = await postUpload(url, {
      options: PIFA_HALF,
      files: [parts[0], { ...parts[0], filename: "model-2.safetensors" }, parts[1]],
    });
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("MISSING_PART");
    expect(body.error.field).toBe("index");
  });
});

describe("source submission", () => {
  beforeAll(async () => {
    const parts = await fixtureParts();
    const { Readable } = await import("node:stream");
    await harness.storage.put(
      "models/tiny/model.safetensors",
      Readable.from([Buffer.from(parts[0].bytes)]),
    );
    await harness.storage.put(
      "models/tiny/config.json",
      Readable.from([Buffer.from(parts[1].bytes)]),
    );
  });

  test("source job keeps its source", async () => {
    const response = await postJson(url, "/v1/jobs", {
      source: "models/tiny",
      options: { method: "svd", density: 0.4 },
    });
    expect(response.status).toBe(202);
    const { id } = await json(response);
    expect((await waitForFinalStatus(url, id)).status).toBe("succeeded");
    const deleted = await fetch(`${url}/v1/jobs/${id}`, { method: "DELETE" });
    expect(deleted.status).toBe(204);
    expect((await harness.storage.list("models/tiny/")).map((object) => object.key)).toEqual([
      "models/tiny/config.json",
      "models/tiny/model.safetensors",
    ]);
  });

  test("missing source gives 422 MISSING_CONFIG", async () => {
    const response = await postJson(url, "/v1/jobs", { source: "models/none", options: PIFA_HALF });
    expect(response.status).toBe(422);
    expect((await json(response)).error.code).toBe("MISSING_CONFIG");
  });

  test.each([["../etc"], ["/abs"], [".pifa/tmp"]])(
    "invalid source %s gives 400",
    async (source) => {
      const response = await postJson(url, "/v1/jobs", { source, options: PIFA_HALF });
      expect(response.status).toBe(400);
      const body = await json(response);
      expect(body.error.code).toBe("INVALID_SOURCE");
      expect(body.error.field).toBe("source");
    },
  );

  test("bad options in JSON name the field", async () => {
    const response = await postJson(url, "/v1/jobs", {
      source: "models/tiny",
      options: { method: "pifa", density: "half" },
    });
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("INVALID_OPTIONS");
    expect(body.error.field).toBe("options.density");
  });

  test("unknown body field gives 400", async () => {
    const response = await postJson(url, "/v1/jobs", {
      source: "models/tiny",
      options: PIFA_HALF,
      extra: 1,
    });
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe("INVALID_REQUEST");
  });
});

describe("idempotency", () => {
  test("same key returns same job", async () => {
    const headers = { "idempotency-key": `same-${Date.now()}` };
    const first = await submitFixture(PIFA_HALF, headers);
    const firstJob = await json(first);
    const keysAfterFirst = await storedKeys();
    const second = await submitFixture(PIFA_HALF, headers);
    const secondJob = await json(second);
    expect(second.status).toBe(202);
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    expect(secondJob.id).toBe(firstJob.id);
    expect(second.headers.get("location")).toBe(`/v1/jobs/${firstJob.id}`);
    // The replayed upload's objects are removed; only the first job's objects may have changed.
    const keysAfterSecond = await storedKeys();
    expect(keysAfterSecond.filter((key) => !key.startsWith(`jobs/${firstJob.id}/`))).toEqual(
      keysAfterFirst.filter((key) => !key.startsWith(`jobs/${firstJob.id}/`)),
    );
    await waitForFinalStatus(url, firstJob.id);
  });

  test("same key with other options gives 409", async () => {
    const headers = { "idempotency-key": `other-${Date.now()}` };
    const first = await submitFixture(PIFA_HALF, headers);
    const firstJob = await json(first);
    const before = await storedKeys();
    const second = await submitFixture({ method: "pifa", density: 0.6 }, headers);
    expect(second.status).toBe(409);
    expect((await json(second)).error.code).toBe("IDEMPOTENCY_KEY_REUSED");
    expect((await storedKeys()).filter((key) => !key.startsWith(`jobs/${firstJob.id}/`))).toEqual(
      before.filter((key) => !key.startsWith(`jobs/${firstJob.id}/`)),
    );
    await waitForFinalStatus(url, firstJob.id);
  });

  test("invalid key gives 400", async () => {
    const response = await submitFixture(PIFA_HALF, { "idempotency-key": "has space" });
    expect(response.status).toBe(400);
    expect((await json(response)).error.field).toBe("Idempotency-Key");
  });
});

describe("listing", () => {
  test("pages cover every job once, newest first", async () => {
    const all = await json(await fetch(`${url}/v1/jobs?limit=200`));
    expect(all.nextCursor).toBeNull();
    expect(all.jobs.length).toBeGreaterThanOrEqual(4);
    const ids = all.jobs.map((job: { id: string }) => job.id);
    expect([...ids].sort().reverse()).toEqual(ids);
    for (const job of all.jobs) expect(job.report).toBeUndefined();

    const paged: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `limit=3&after=${cursor}` : "limit=3";
      const page = await json(await fetch(`${url}/v1/jobs?${query}`));
      expect(page.jobs.length).toBeLessThanOrEqual(3);
      paged.push(...page.jobs.map((job: { id: string }) => job.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(paged).toEqual(ids);
  });

  test("status filter returns only that status", async () => {
    const page = await json(await fetch(`${url}/v1/jobs?status=succeeded&limit=200`));
    expect(page.jobs.length).toBeGreaterThan(0);
    for (const job of page.jobs) expect(job.status).toBe("succeeded");
    const none = await json(await fetch(`${url}/v1/jobs?status=failed`));
    expect(none.jobs).toEqual([]);
  });

  test.each([
    ["limit=0", "querystring.limit"],
    ["limit=201", "querystring.limit"],
    ["limit=abc", "querystring.limit"],
    ["status=done", "querystring.status"],
  ])("query %s gives 400", async (query, field) => {
    const response = await fetch(`${url}/v1/jobs?${query}`);
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("INVALID_REQUEST");
    expect(body.error.field).toBe(field);
  });

  test("invalid cursor gives 400", async () => {
    const response = await fetch(`${url}/v1/jobs?after=bm90LWFuLWlk`);
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe("INVALID_CURSOR");
  });
});

describe("not found", () => {
  test.each([
    ["/v1/jobs/0190d0a0-0000-7000-8000-000000000000"],
    ["/v1/jobs/not-an-id"],
    ["/v1/jobs/not-an-id/events"],
  ])("%s gives 404 JOB_NOT_FOUND", async (path) => {
    const response = await fetch(`${url}${path}`);
    expect(response.status).toBe(404);
    expect((await json(response)).error.code).toBe("JOB_NOT_FOUND");
  });

  test("unknown route gives 404 ROUTE_NOT_FOUND", async () => {
    const response = await fetch(`${url}/v2/nothing`);
    expect(response.status).toBe(404);
    expect((await json(response)).error.code).toBe("ROUTE_NOT_FOUND");
  });
});
