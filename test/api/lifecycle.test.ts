/**
 * Job lifecycle over real HTTP: cancelling queued and running jobs, deleting jobs, restarting the
 * API and shutting the worker down while a job runs. A synthetic 4-layer checkpoint (28 linear
 * layers to compress) makes a job run for about a second, so each action taken after the first
 * layer lands while later layers are still to come.
 */

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { json, postJson, readEvents, type SseEvent, sha256, waitForFinalStatus } from "./client.ts";
import { Harness } from "./harness.ts";
import { writeSyntheticLlama } from "./synthetic.ts";

let harness: Harness;
let url: string;

const SOURCE = "models/synthetic";
const LAYERS_TOTAL = 4 * 7;
const OPTIONS = { method: "pifa", density: 0.5 };

beforeAll(async () => {
  harness = await Harness.start({ heartbeatMs: 200, captureLogs: true });
  url = await harness.startApi();
  const directory = join(harness.storageRoot ?? "", ...SOURCE.split("/"));
  await mkdir(directory, { recursive: true });
  await writeSyntheticLlama(directory, {
    layers: 4,
    hidden: 256,
    intermediate: 688,
    vocab: 256,
    seed: 3,
  });
});

afterAll(async () => {
  await harness.stop();
});

async function submitSynthetic(): Promise<string> {
  const response = await postJson(url, "/v1/jobs", { source: SOURCE, options: OPTIONS });
  expect(response.status).toBe(202);
  return ((await json(response)) as { id: string }).id;
}

async function getJob(
  id: string,
): Promise<Record<string, unknown> & { status: string; progress: { layersDone: number } }> {
  return json(await fetch(`${url}/v1/jobs/${id}`));
}

function statusesOf(events: SseEvent[]): string[] {
  return events
    .filter((event) => event.event === "status")
    .map((event) => (event.data as { status: string }).status);
}

function isLayerProgress(event: SseEvent): boolean {
  return event.event === "progress" && (event.data as { layersDone: number }).layersDone >= 1;
}

/** Runs `action` once, on the first progress event after a layer, and reads on to the end. */
async function actDuringRun(id: string, action: () => Promise<void>) {
  let acted = false;
  return readEvents(url, id, {
    onEvent: async (event) => {
      if (!acted && isLayerProgress(event)) {
        acted = true;
        await action();
      }
      return undefined;
    },
  });
}

describe("without a worker", () => {
  test("idle event stream sends heartbeats", async () => {
    const id = await submitSynthetic();
    const { events, comments, ended } = await readEvents(url, id, {
      onComment: (comment) => (comment === "heartbeat" ? "stop" : undefined),
    });
    expect(ended).toBe(false);
    expect(comments).toContain("heartbeat");
    expect(statusesOf(events)).toEqual(["queued"]);
    expect((await fetch(`${url}/v1/jobs/${id}/cancel`, { method: "POST" })).status).toBe(200);
  });

  test("queued job cancels at once", async () => {
    const id = await submitSynthetic();
    const response = await fetch(`${url}/v1/jobs/${id}/cancel`, { method: "POST" });
    expect(response.status).toBe(200);
    const job = await json(response);
    expect(job.status).toBe("cancelled");
    expect(job.finishedAt).toEqual(expect.any(String));
    const { events, ended } = await readEvents(url, id);
    expect(ended).toBe(true);
    expect(statusesOf(events)).toEqual(["queued", "cancelled"]);
  });

  test("cancelled queued job never runs", async () => {
    const id = await submitSynthetic();
    expect((await fetch(`${url}/v1/jobs/${id}/cancel`, { method: "POST" })).status).toBe(200);
    harness.startWorker();
    // The worker runs one job at a time, so once a later job finished it has seen the queue.
    const later = await submitSynthetic();
    const laterFinal = await waitForFinalStatus(url, later);
    expect(laterFinal.status).toBe("succeeded");
    const job = await getJob(id);
    expect(job.status).toBe("cancelled");
    expect(job.startedAt).toBeNull();
  });
});

describe("with a worker", () => {
  test("running job cancels between layers", async () => {
    const id = await submitSynthetic();
    let cancelStatus = 0;
    const { events, ended } = await actDuringRun(id, async () => {
      const response = await fetch(`${url}/v1/jobs/${id}/cancel`, { method: "POST" });
      cancelStatus = response.status;
      await response.arrayBuffer();
    });
    expect(ended).toBe(true);
    expect(cancelStatus).toBe(202);
    expect(statusesOf(events)).toEqual(["queued", "running", "cancelled"]);
    const job = await getJob(id);
    expect(job.status).toBe("cancelled");
    expect(job.progress.layersDone).toBeLessThan(LAYERS_TOTAL);
    expect(job.artifacts).toBeUndefined();
    expect(await harness.storage.list(`jobs/${id}/artifacts/`)).toEqual([]);
    // The layers finished before the cancel stay saved for a retry.
    expect((await harness.storage.list(`jobs/${id}/layers/`)).length).toBeGreaterThan(0);
  });

  test("retry resumes a cancelled job", async () => {
    const id = await submitSynthetic();
    const first = await actDuringRun(id, async () => {
      await (await fetch(`${url}/v1/jobs/${id}/cancel`, { method: "POST" })).arrayBuffer();
    });
    expect(statusesOf(first.events)).toEqual(["queued", "running", "cancelled"]);
    const saved = await harness.storage.list(`jobs/${id}/layers/`);
    expect(saved.length).toBeGreaterThan(0);
    expect(saved.length).toBeLessThan(LAYERS_TOTAL);

    const response = await fetch(`${url}/v1/jobs/${id}/retry`, { method: "POST" });
    expect(response.status).toBe(202);
    const queued = await json(response);
    expect(queued.status).toBe("queued");
    expect(queued.error).toBeUndefined();
    expect(queued.finishedAt).toBeNull();

    const second = await readEvents(url, id, { lastEventId: first.events.at(-1)?.id });
    expect(statusesOf(second.events)).toEqual(["queued", "running", "succeeded"]);
    expect((second.events[0].data as { reason: string }).reason).toBe("retry");
    const job = await getJob(id);
    expect(job.status).toBe("succeeded");
    expect((job.report as { totals: { layers: number } }).totals.layers).toBe(LAYERS_TOTAL);
    // Every saved layer was loaded instead of computed, and none is kept after success.
    const loaded = harness.logs.filter(
      (line) => line.jobId === id && line.msg === "layer loaded from an earlier attempt",
    );
    expect(loaded.length).toBe(saved.length);
    expect(await harness.storage.list(`jobs/${id}/layers/`)).toEqual([]);
  });

  test("cancelling a finished job gives 409", async () => {
    const id = await submitSynthetic();
    expect((await waitForFinalStatus(url, id)).status).toBe("succeeded");
    const response = await fetch(`${url}/v1/jobs/${id}/cancel`, { method: "POST" });
    expect(response.status).toBe(409);
    expect((await json(response)).error.code).toBe("JOB_FINISHED");
    const retry = await fetch(`${url}/v1/jobs/${id}/retry`, { method: "POST" });
    expect(retry.status).toBe(409);
    expect((await json(retry)).error.code).toBe("JOB_NOT_RETRYABLE");
  });

  test("deleting a running job removes everything", async () => {
    const id = await submitSynthetic();
    let deleteStatus = 0;
    const { ended } = await actDuringRun(id, async () => {
      const response = await fetch(`${url}/v1/jobs/${id}`, { method: "DELETE" });
      deleteStatus = response.status;
    });
    expect(deleteStatus).toBe(204);
    expect(ended).toBe(true);
    expect((await fetch(`${url}/v1/jobs/${id}`)).status).toBe(404);

    // Once a later job finished, the single-job worker has stopped the deleted one.
    const later = await submitSynthetic();
    expect((await waitForFinalStatus(url, later)).status).toBe("succeeded");
    expect(await harness.storage.list(`jobs/${id}/`)).toEqual([]);
    expect(await harness.redis.exists(harness.keys.job(id), harness.keys.events(id))).toBe(0);
    const listed = await json(await fetch(`${url}/v1/jobs?limit=200`));
    expect(listed.jobs.map((job: { id: string }) => job.id)).not.toContain(id);
  });

  test("deleting a finished job removes its artifacts", async () => {
    const id = await submitSynthetic();
    expect((await waitForFinalStatus(url, id)).status).toBe("succeeded");
    expect((await harness.storage.list(`jobs/${id}/artifacts/`)).length).toBe(3);
    expect((await fetch(`${url}/v1/jobs/${id}`, { method: "DELETE" })).status).toBe(204);
    expect(await harness.storage.list(`jobs/${id}/`)).toEqual([]);
    expect((await fetch(`${url}/v1/jobs/${id}/artifacts/report.json`)).status).toBe(404);
    expect((await fetch(`${url}/v1/jobs/${id}`, { method: "DELETE" })).status).toBe(404);
  });

  test("API restart during a run loses nothing", async () => {
    const id = await submitSynthetic();
    let restarted = false;
    const first = await actDuringRun(id, async () => {
      // Closing the app ends this open stream; the read loop then returns.
      await harness.stopApi();
      restarted = true;
    });
    expect(restarted).toBe(true);
    expect(first.ended).toBe(true);
    const lastId = first.events.at(-1)?.id;
    expect(lastId).toBeDefined();

    url = await harness.startApi();
    const second = await readEvents(url, id, { lastEventId: lastId });
    expect(second.ended).toBe(true);
    const ids = [...first.events, ...second.events].map((event) => event.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(statusesOf([...first.events, ...second.events])).toEqual([
      "queued",
      "running",
      "succeeded",
    ]);
    const progress = [...first.events, ...second.events].filter(
      (event) =>
        event.event === "progress" && (event.data as { stage: string }).stage === "compressing",
    );
    expect(progress.map((event) => (event.data as { layersDone: number }).layersDone)).toEqual(
      Array.from({ length: LAYERS_TOTAL }, (_, i) => i + 1),
    );
    expect((await getJob(id)).status).toBe("succeeded");
  });

  test("worker shutdown hands the job back", async () => {
    const id = await submitSynthetic();
    const { events } = await actDuringRun(id, async () => {
      await harness.stopWorker();
      const job = await getJob(id);
      expect(job.status).toBe("queued");
      harness.startWorker();
    });
    expect(statusesOf(events)).toEqual(["queued", "running", "queued", "running", "succeeded"]);
    const handBack = events.find(
      (event) => event.event === "status" && (event.data as { reason?: string }).reason,
    );
    const handBackData = handBack?.data as { reason: string } | undefined;
    expect(handBackData?.reason).toBe("worker shut down");
    const job = await getJob(id);
    expect(job.status).toBe("succeeded");
    expect(job.progress.layersDone).toBe(LAYERS_TOTAL);
  });

  test("closing the API finishes an in-flight download", async () => {
    const id = await submitSynthetic();
    expect((await waitForFinalStatus(url, id)).status).toBe("succeeded");
    const job = await getJob(id);
    const artifact = (job.artifacts as Array<{ name: string; size: number; sha256: string }>).find(
      (candidate) => candidate.name === "model.safetensors",
    );
    // Close only once the response has started. An idle keep-alive connection is closed at once,
    // so an earlier close could beat the request to the server.
    const response = await fetch(`${url}/v1/jobs/${id}/artifacts/model.safetensors`);
    const closing = harness.stopApi();
    try {
      const bytes = new Uint8Array(await response.arrayBuffer());
      await closing;
      expect(response.status).toBe(200);
      expect(bytes.byteLength).toBe(artifact?.size);
      expect(sha256(bytes)).toBe(artifact?.sha256);
    } finally {
      await closing.catch(() => {});
      url = await harness.startApi();
    }
  });

  test("resume after final event ends", async () => {
    const id = await submitSynthetic();
    const { events } = await readEvents(url, id);
    const resumed = await readEvents(url, id, { lastEventId: events.at(-1)?.id });
    expect(resumed.ended).toBe(true);
    expect(resumed.events).toEqual([]);
  });

  test("malformed Last-Event-ID gives 400", async () => {
    const listed = await json(await fetch(`${url}/v1/jobs?limit=1`));
    const response = await fetch(`${url}/v1/jobs/${listed.jobs[0].id}/events`, {
      headers: { "last-event-id": "abc" },
    });
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe("INVALID_EVENT_ID");
  });
});
