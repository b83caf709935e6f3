/**
 * Worker outcomes that need a particular input or state: retries after an infrastructure error,
 * an immediate failure on bad tensor data, and the retention sweep.
 */

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { sweepExpiredJobs } from "../../src/jobs/removal.ts";
import {
  fixtureParts,
  json,
  postJson,
  postUpload,
  readEvents,
  waitForFinalStatus,
} from "./client.ts";
import { Harness, RETRY } from "./harness.ts";
import { writeSyntheticLlama } from "./synthetic.ts";

let harness: Harness;
let url: string;

beforeAll(async () => {
  harness = await Harness.start({ retention: { maxAgeSeconds: 3600, maxCount: 2 } });
  url = await harness.startApi();
});

afterAll(async () => {
  await harness.stop();
});

async function writeSource(name: string, nanTensor?: string): Promise<string> {
  const directory = join(harness.storageRoot ?? "", "models", name);
  await mkdir(directory, { recursive: true });
  await writeSyntheticLlama(directory, {
    layers: 1,
    hidden: 32,
    intermediate: 64,
    vocab: 64,
    nanTensor,
  });
  return `models/${name}`;
}

test("infrastructure error is retried, then fails", async () => {
  const source = await writeSource("vanishing");
  const response = await postJson(url, "/v1/jobs", {
    source,
    options: { method: "svd", density: 0.5 },
  });
  expect(response.status).toBe(202);
  const { id } = await json(response);
  // Validated and queued; now the weights disappear before any worker reads them.
  await harness.storage.delete(`${source}/model.safetensors`);
  harness.startWorker();

  const { events } = await readEvents(url, id);
  const statuses = events
    .filter((event) => event.event === "status")
    .map((event) => event.data as Record<string, unknown>);
  expect(statuses.map((status) => status.status)).toEqual([
    "queued",
    "running",
    "queued",
    "running",
    "failed",
  ]);
  expect(statuses[2].reason).toBe("retrying");
  expect(statuses[2].maxAttempts).toBe(RETRY.attempts);
  const job = await json(await fetch(`${url}/v1/jobs/${id}`));
  expect(job.status).toBe("failed");
  expect(job.error.code).toBe("COMPRESSION_FAILED");
  expect(job.error.message).toContain(`after ${RETRY.attempts} attempts`);
  expect(job.error.message).toContain("model.safetensors");
  expect(job.error.message).not.toMatch(/\n\s+at /);

  // With the weights back in place, a retry succeeds under the same id.
  await writeSource("vanishing");
  const retry = await fetch(`${url}/v1/jobs/${id}/retry`, { method: "POST" });
  expect(retry.status).toBe(202);
  const retriedFinal = await waitForFinalStatus(url, id);
  expect(retriedFinal.status).toBe("succeeded");
  const retried = await json(await fetch(`${url}/v1/jobs/${id}`));
  expect(retried.error).toBeUndefined();
  expect(retried.artifacts.length).toBe(3);
});

test("non-finite weights fail at once without retry", async () => {
  const source = await writeSource("poisoned", "model.layers.0.mlp.up_proj.weight");
  const response = await postJson(url, "/v1/jobs", {
    source,
    options: { method: "pifa", density: 0.5 },
  });
  expect(response.status).toBe(202);
  const { id } = await json(response);
  const final = await waitForFinalStatus(url, id);
  expect(final.status).toBe("failed");
  const job = await json(await fetch(`${url}/v1/jobs/${id}`));
  expect(job.error.code).toBe("NON_FINITE_TENSOR");
  expect(job.error.message).toContain("model.layers.0.mlp.up_proj.weight");
  const { events } = await readEvents(url, id);
  expect(
    events
      .filter((event) => event.event === "status")
      .map((event) => (event.data as { status: string }).status),
  ).toEqual(["queued", "running", "failed"]);
});

test("retention sweep deletes the oldest finished jobs", async () => {
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const response = await postUpload(url, {
      options: { method: "svd", density: 0.5 },
      files: await fixtureParts(),
    });
    const { id } = await json(response);
    expect((await waitForFinalStatus(url, id)).status).toBe("succeeded");
    ids.push(id);
  }
  // Four finished jobs now (two from the tests above), and the policy keeps two.
  const deleted = await sweepExpiredJobs(harness.store, harness.storage, harness.logger);
  expect(deleted).toBe(2);
  for (const id of ids) expect((await fetch(`${url}/v1/jobs/${id}`)).status).toBe(200);
  const listed = await json(await fetch(`${url}/v1/jobs`));
  expect(listed.jobs.map((job: { id: string }) => job.id).sort()).toEqual([...ids].sort());
  expect(
    (await harness.storage.list("jobs/")).every((object) =>
      ids.some((id) => object.key.startsWith(`jobs/${id}/`)),
    ),
  ).toBe(true);
  expect(await sweepExpiredJobs(harness.store, harness.storage, harness.logger)).toBe(0);
});
