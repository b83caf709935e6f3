/**
 * A layer-group child job that fails on invalid input fails the whole job with the child's error
 * code and message, and BullMQ fails the parent job (`failParentOnFailure`).
 */

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { afterAll, beforeAll, expect, test } from "vitest";
import { LAYER_GROUP_QUEUE_NAME } from "../../src/jobs/flow.ts";
import { QUEUE_NAME } from "../../src/jobs/queue.ts";
import { JobStore } from "../../src/jobs/store.ts";
import { connectRedis } from "../../src/redis/connect.ts";
import { CompressionWorker } from "../../workers/worker.ts";
import { json, postUpload, waitForFinalStatus } from "../api/client.ts";
import { Harness, PREFIX, RETRY } from "../api/harness.ts";
import { writeSyntheticLlama } from "../api/synthetic.ts";

const NAN_TENSOR = "model.layers.1.mlp.up_proj.weight";

let harness: Harness;
let checkpointDir: string;

beforeAll(async () => {
  harness = await Harness.start();
  await harness.startApi();
  checkpointDir = await mkdtemp(join(tmpdir(), "pifa-scale-nan-"));
  await writeSyntheticLlama(checkpointDir, {
    layers: 2,
    hidden: 32,
    intermediate: 64,
    vocab: 64,
    nanTensor: NAN_TENSOR,
  });
});

afterAll(async () => {
  await harness.stop();
  await rm(checkpointDir, { recursive: true, force: true });
});

test("failed child fails the parent", { timeout: 60_000 }, async () => {
  const connection = connectRedis(harness.redisServer.url, { forWorker: true });
  const worker = new CompressionWorker({
    connection,
    store: new JobStore(connection, harness.keys, harness.store.retention),
    storage: harness.storage,
    prefix: PREFIX,
    retry: RETRY,
    retention: harness.store.retention,
    logger: harness.logger,
    layersPerChild: 1,
  });
  const queue = new Queue(QUEUE_NAME, { connection, prefix: PREFIX });
  const layerGroups = new Queue(LAYER_GROUP_QUEUE_NAME, { connection, prefix: PREFIX });
  try {
    const files = [
      {
        part: "checkpoint",
        filename: "model.safetensors",
        bytes: await readFile(join(checkpointDir, "model.safetensors")),
      },
      {
        part: "config",
        filename: "config.json",
        bytes: await readFile(join(checkpointDir, "config.json")),
      },
    ];
    const response = await postUpload(harness.url, {
      options: { method: "svd", density: 0.5 },
      files,
    });
    expect(response.status).toBe(202);
    const { id } = await json(response);

    const final = await waitForFinalStatus(harness.url, id);
    expect(final.status).toBe("failed");
    const job = await json(await fetch(`${harness.url}/v1/jobs/${id}`));
    expect(job.status).toBe("failed");
    expect(job.error.code).toBe("NON_FINITE_TENSOR");
    expect(job.error.message).toContain(NAN_TENSOR);

    // The parent went to waiting-children, so the child's failure is what failed it.
    expect(await queue.getJobState(id)).toBe("failed");
    const counts = await queue.getJobCounts("waiting-children", "active", "wait");
    expect(counts).toEqual({ "waiting-children": 0, active: 0, wait: 0 });
    const failedChildren = await layerGroups.getFailed();
    expect(failedChildren).toHaveLength(1);
    expect(failedChildren[0]?.data.jobId).toBe(id);
    expect(failedChildren[0]?.failedReason).toContain(NAN_TENSOR);
  } finally {
    await queue.close();
    await layerGroups.close();
    await worker.close();
    await connection.quit();
  }
});
