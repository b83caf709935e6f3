/**
 * The embedded Redis stopped with SIGTERM in the middle of a job and started again on the same
 * port and append-only file. The worker and the API reconnect, the job finishes, and its event
 * stream still contains every status and progress event.
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { json, postJson, readEvents } from "../api/client.ts";
import { EIGHT_LAYERS, referenceSafetensors, writeSource } from "./reference.ts";
import { ReliabilityService } from "./service.ts";

const OPTIONS = { method: "svd", density: 0.5 };
const LINEARS = EIGHT_LAYERS.layers * 7;

let service: ReliabilityService;

beforeAll(async () => {
  service = await ReliabilityService.start();
});

afterAll(async () => {
  await service.stop();
});

test("Redis restart mid-job loses nothing", async () => {
  const source = await writeSource(service.storageRoot, "restart", EIGHT_LAYERS);
  service.startWorker();
  const response = await postJson(service.url, "/v1/jobs", { source, options: OPTIONS });
  expect(response.status).toBe(202);
  const { id } = await json(response);

  let lastEventId: string | undefined;
  await readEvents(service.url, id, {
    onEvent: (event) => {
      lastEventId = event.id;
      const data = event.data as { layersDone?: number };
      return event.event === "progress" && (data.layersDone ?? 0) >= 10 ? "stop" : undefined;
    },
  });
  const pidBefore = service.redisServer.pid;
  await service.restartRedis(500);
  expect(service.redisServer.pid).not.toBe(pidBefore);

  // The stream resumes from the last event seen before the restart and runs to the end.
  const resumed = await readEvents(service.url, id, { lastEventId });
  expect(resumed.ended).toBe(true);
  const { events } = await readEvents(service.url, id);
  const ids = events.map((event) => event.id ?? "");
  expect(new Set(ids).size).toBe(ids.length);
  expect(resumed.events.map((event) => event.id)).toEqual(
    ids.slice(ids.indexOf(lastEventId ?? "") + 1),
  );

  const statuses = events
    .filter((event) => event.event === "status")
    .map((event) => (event.data as { status: string }).status);
  expect(statuses[0]).toBe("queued");
  expect(statuses.at(-1)).toBe("succeeded");
  const progressed = new Set(
    events
      .filter((event) => event.event === "progress")
      .map((event) => (event.data as { layersDone: number }).layersDone),
  );
  for (let done = 1; done <= LINEARS; done++) expect(progressed.has(done)).toBe(true);

  const job = await json(await fetch(`${service.url}/v1/jobs/${id}`));
  expect(job.status).toBe("succeeded");
  const reference = await referenceSafetensors(join(service.storageRoot, source), OPTIONS);
  const artifact = job.artifacts.find(
    (entry: { name: string }) => entry.name === "model.safetensors",
  );
  expect(artifact.sha256).toBe(createHash("sha256").update(reference).digest("hex"));
  expect(await service.storedKeys(`jobs/${id}/layers/`)).toEqual([]);
}, 50_000);
