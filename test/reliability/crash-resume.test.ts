/**
 * A `pifa worker` process killed with SIGKILL in the middle of a job: once its lock expires, a new
 * worker resumes after the saved layers, computes no saved layer again, and publishes an artifact
 * byte-identical to an uninterrupted offline run.
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { json, postJson, readEvents, type SseEvent } from "../api/client.ts";
import { EIGHT_LAYERS, referenceSafetensors, writeSource } from "./reference.ts";
import { ReliabilityService } from "./service.ts";

const OPTIONS = { method: "pifa", density: 0.5 };
const LOCK_DURATION_MS = 1500;
const LINEARS = EIGHT_LAYERS.layers * 7;

let service: ReliabilityService;

beforeAll(async () => {
  service = await ReliabilityService.start();
});

afterAll(async () => {
  await service.stop();
});

/** Layer names that a worker's debug log reports as loaded from storage instead of computed. */
function loadedLayers(logs: Array<Record<string, unknown>>): string[] {
  return logs
    .filter((line) => line.msg === "layer loaded from an earlier attempt")
    .map((line) => String(line.layer));
}

/** Milliseconds since the epoch at which Redis appended a stream entry, from its id. */
function eventTime(event: SseEvent): number {
  return Number((event.id ?? "").split("-")[0]);
}

test("SIGKILLed worker resumes byte-identical", async () => {
  const source = await writeSource(service.storageRoot, "crash", EIGHT_LAYERS);
  const reference = await referenceSafetensors(join(service.storageRoot, source), OPTIONS);

  const first = service.startChildWorker(LOCK_DURATION_MS);
  const response = await postJson(service.url, "/v1/jobs", { source, options: OPTIONS });
  expect(response.status).toBe(202);
  const { id } = await json(response);

  // Kill at a random layer between the 5th and the 40th of 56.
  const killAt = 5 + Math.floor(Math.random() * 36);
  let killedAfter = -1;
  await readEvents(service.url, id, {
    onEvent: (event) => {
      const data = event.data as { layersDone?: number };
      if (event.event === "progress" && (data.layersDone ?? 0) >= killAt) {
        first.process.kill("SIGKILL");
        killedAfter = data.layersDone ?? 0;
        return "stop";
      }
      return undefined;
    },
  });
  await first.exited;
  expect(first.process.signalCode).toBe("SIGKILL");
  expect(killedAfter).toBeGreaterThanOrEqual(killAt);
  const savedAtKill = await service.storedKeys(`jobs/${id}/layers/`);
  expect(savedAtKill.length).toBeGreaterThanOrEqual(killedAfter);
  expect(savedAtKill.length).toBeLessThan(LINEARS);

  const secondStarted = Date.now();
  const second = service.startChildWorker(LOCK_DURATION_MS);
  const { events } = await readEvents(service.url, id);
  const statuses = events.filter((event) => event.event === "status");
  expect((statuses.at(-1)?.data as { status: string } | undefined)?.status).toBe("succeeded");

  const job = await json(await fetch(`${service.url}/v1/jobs/${id}`));
  expect(job.status).toBe("succeeded");
  const artifact = Buffer.from(
    await (await fetch(`${service.url}/v1/jobs/${id}/artifacts/model.safetensors`)).arrayBuffer(),
  );
  expect(artifact.byteLength).toBe(reference.byteLength);
  expect(createHash("sha256").update(artifact).digest("hex")).toBe(
    createHash("sha256").update(reference).digest("hex"),
  );

  // Progress events of the stage "compressing" name each layer once it is saved, or loaded on a
  // later run. The final assembly reports every layer again under "assembling". The first worker
  // wrote all its events before the second one started. The second worker's debug log names the
  // layers it loaded instead of computing them.
  const layersOf = (progress: SseEvent[]) =>
    progress.map((event) => String((event.data as { layer?: string }).layer));
  const progress = events.filter(
    (event) =>
      event.event === "progress" && (event.data as { stage?: string }).stage === "compressing",
  );
  const savedByFirst = new Set(layersOf(progress.filter((e) => eventTime(e) < secondStarted)));
  const reportedBySecond = new Set(layersOf(progress.filter((e) => eventTime(e) >= secondStarted)));
  const loaded = new Set(loadedLayers(second.logs));
  const computedBySecond = [...reportedBySecond].filter((layer) => !loaded.has(layer));
  expect(savedByFirst.size).toBeGreaterThanOrEqual(killedAfter);
  // Layer groups that finished before the kill do not run again, so the second worker loads only
  // the saved layers of the group it resumes. Computing exactly the layers missing at the kill
  // shows that no saved layer was computed again, even one saved just before its progress event.
  expect(loaded.size).toBeLessThanOrEqual(savedAtKill.length);
  for (const layer of computedBySecond) expect(savedByFirst.has(layer)).toBe(false);
  expect(computedBySecond.length).toBe(LINEARS - savedAtKill.length);
  expect(new Set([...savedByFirst, ...reportedBySecond]).size).toBe(LINEARS);

  // Saved layers are gone after success, so the job's prefix contains exactly its artifacts.
  expect(await service.storedKeys(`jobs/${id}/`)).toEqual(
    [...job.artifacts.map((artifact: { name: string }) => `jobs/${id}/artifacts/${artifact.name}`)]
      .concat(await service.storedKeys(`jobs/${id}/inputs/`))
      .sort(),
  );
}, 50_000);
