/**
 * A layer that takes longer than the BullMQ lock duration: the worker keeps renewing its lock
 * while the native SVD runs off the event loop, so no second pickup runs the job or a layer again.
 */

import { expect, test } from "vitest";
import { json, postJson, readEvents } from "../api/client.ts";
import { writeSource } from "./reference.ts";
import { PREFIX, ReliabilityService } from "./service.ts";

const LOCK_DURATION_MS = 1000;

/**
 * BullMQ counts every pickup in a job hash's `ats` (attempts started) field. Returns it for the
 * job and for each of its layer-group child jobs.
 */
async function attemptsStarted(
  service: ReliabilityService,
  id: string,
): Promise<{ job: string | null; groups: Array<string | undefined> }> {
  const job = await service.redis.hget(`${PREFIX}:compress:${id}`, "ats");
  const groups: Array<string | undefined> = [];
  for (const key of await service.redis.keys(`${PREFIX}:compress-layers:*`)) {
    if ((await service.redis.type(key)) !== "hash") continue;
    const fields = await service.redis.hgetall(key);
    if (fields.data?.includes(id)) groups.push(fields.ats);
  }
  return { job, groups };
}

// A fanned-out job is started twice by design: once to add its layer groups, once to assemble.
test.each([
  ["in the job", 0, 0, "1"],
  ["in layer groups", 1, 2, "2"],
])(
  "layer longer than lock runs once %s",
  async (_mode, layersPerChild, groupCount, jobStarts) => {
    const service = await ReliabilityService.start();
    try {
      // Two 2048 x 2048 linears (q_proj and k_proj). Each SVD takes seconds on one BLAS thread.
      const source = await writeSource(service.storageRoot, "stall", {
        layers: 1,
        hidden: 2048,
        intermediate: 64,
        vocab: 64,
      });
      const worker = service.startWorker(LOCK_DURATION_MS, layersPerChild);
      const stalled: string[] = [];
      worker.worker.on("stalled", (jobId) => stalled.push(jobId));
      worker.layerGroupWorker.on("stalled", (jobId) => stalled.push(jobId));

      const options = { method: "svd", density: 0.5, targets: ["*.q_proj.*", "*.k_proj.*"] };
      const response = await postJson(service.url, "/v1/jobs", { source, options });
      expect(response.status).toBe(202);
      const { id } = await json(response);

      const { events } = await readEvents(service.url, id);
      const statuses = events.map((event) => event.data as { status?: string });
      expect(statuses.filter((data) => data.status === "running")).toHaveLength(1);
      expect(statuses.at(-1)?.status).toBe("succeeded");

      const job = await json(await fetch(`${service.url}/v1/jobs/${id}`));
      expect(job.status).toBe("succeeded");
      expect((await service.store.get(id))?.attempts).toBe(1);
      // Each layer took longer than the lock lasts, so only lock renewal kept the job.
      const layerSeconds = job.report.layers.map((layer: { seconds: number }) => layer.seconds);
      expect(layerSeconds).toHaveLength(2);
      expect(Math.max(...layerSeconds) * 1000).toBeGreaterThan(LOCK_DURATION_MS);

      const saves = [...service.storage.layerPuts.entries()].filter(([key]) =>
        key.startsWith(`jobs/${id}/layers/`),
      );
      expect(saves).toHaveLength(2);
      for (const [, count] of saves) expect(count).toBe(1);
      expect(stalled).toEqual([]);

      const started = await attemptsStarted(service, id);
      expect(started.job).toBe(jobStarts);
      expect(started.groups).toHaveLength(groupCount);
      for (const attempts of started.groups) expect(attempts).toBe("1");
    } finally {
      await service.stop();
    }
  },
  50_000,
);
