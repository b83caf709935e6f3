/**
 * Data-aware jobs move from the main queue to the data-aware queue, whose global concurrency
 * (`PIFA_MAX_DATA_AWARE_JOBS`) caps how many run at once across all workers.
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Queue } from "bullmq";
import { afterAll, beforeAll, expect, test } from "vitest";
import { DATA_AWARE_QUEUE_NAME } from "../../src/jobs/flow.ts";
import { QUEUE_NAME } from "../../src/jobs/queue.ts";
import { JobStore } from "../../src/jobs/store.ts";
import { connectRedis } from "../../src/redis/connect.ts";
import { CompressionWorker } from "../../workers/worker.ts";
import { FIXTURE_DIR, fixtureParts, json, postUpload, waitForFinalStatus } from "../api/client.ts";
import { Harness, PREFIX, RETRY } from "../api/harness.ts";

let harness: Harness;

beforeAll(async () => {
  harness = await Harness.start();
  await harness.startApi();
});

afterAll(async () => {
  await harness.stop();
});

test("data-aware job runs under the limit", { timeout: 60_000 }, async () => {
  const connection = connectRedis(harness.redisServer.url, { forWorker: true });
  const worker = new CompressionWorker({
    connection,
    store: new JobStore(connection, harness.keys, harness.store.retention),
    storage: harness.storage,
    prefix: PREFIX,
    retry: RETRY,
    retention: harness.store.retention,
    logger: harness.logger,
    maxDataAwareJobs: 2,
  });
  const mainQueue = new Queue(QUEUE_NAME, { connection, prefix: PREFIX });
  const dataAwareQueue = new Queue(DATA_AWARE_QUEUE_NAME, { connection, prefix: PREFIX });
  try {
    await worker.dataAwareReady;
    expect(await dataAwareQueue.getGlobalConcurrency()).toBe(2);

    const calibration = join(FIXTURE_DIR, "..", "tinystories", "calibration-stories260K.json");
    const response = await postUpload(harness.url, {
      options: { method: "svd-llm", density: 0.5, calibrationSequences: 2, sequenceLength: 32 },
      files: [
        ...(await fixtureParts()),
        { part: "calibration", filename: "calibration.json", bytes: await readFile(calibration) },
      ],
    });
    expect(response.status).toBe(202);
    const { id } = await json(response);

    const final = await waitForFinalStatus(harness.url, id);
    expect(final.status).toBe("succeeded");
    expect(await mainQueue.getJobState(id)).toBe("completed");
    // The record succeeds a moment before BullMQ marks the job completed.
    expect(["active", "completed"]).toContain(await dataAwareQueue.getJobState(id));
    const job = await json(await fetch(`${harness.url}/v1/jobs/${id}`));
    expect(job.report.calibration).toEqual({ sequences: 2, tokens: 2 * 32 });
  } finally {
    await mainQueue.close();
    await dataAwareQueue.close();
    await worker.close();
    await connection.quit();
  }
});
