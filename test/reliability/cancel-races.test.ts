/**
 * Cancel, delete and retry racing a job's own progress: whatever the interleaving, the final state
 * is consistent and storage under `jobs/<id>/` contains exactly what the job record states.
 */

import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { json, postJson, readEvents, type SseEvent } from "../api/client.ts";
import { writeSource } from "./reference.ts";
import { PREFIX, ReliabilityService } from "./service.ts";

const OPTIONS = { method: "pifa", density: 0.5 };
const SETTLE_TIMEOUT_MS = 20_000;

let service: ReliabilityService;
let source: string;

beforeAll(async () => {
  service = await ReliabilityService.start();
  source = await writeSource(service.storageRoot, "small", {
    layers: 2,
    hidden: 64,
    intermediate: 128,
    vocab: 64,
  });
  service.startWorker();
});

afterAll(async () => {
  await service.stop();
});

async function submit(): Promise<string> {
  const response = await postJson(service.url, "/v1/jobs", { source, options: OPTIONS });
  expect(response.status).toBe(202);
  return (await json(response)).id;
}

/** Reads the job's events until `trigger` matches one, then runs `action` at once. */
async function actWhen(
  id: string,
  trigger: (event: SseEvent) => boolean,
  action: () => Promise<Response>,
): Promise<Response | undefined> {
  let response: Response | undefined;
  await readEvents(service.url, id, {
    onEvent: async (event) => {
      if (!trigger(event)) return undefined;
      response = await action();
      return "stop";
    },
  });
  return response;
}

function isStage(stage: string): (event: SseEvent) => boolean {
  return (event) =>
    event.event === "progress" && (event.data as { stage?: string }).stage === stage;
}

/** BullMQ queues of the service: jobs, their layer groups, and data-aware jobs. */
const QUEUES = ["compress", "compress-layers", "compress-data-aware"];

/**
 * Waits until the job is final or deleted and no BullMQ job of any queue is active or waiting
 * for children, so no worker still writes to storage for it.
 */
async function waitForSettledJob(id: string): Promise<void> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  for (;;) {
    const record = await service.store.get(id);
    let busy =
      record !== undefined && !["succeeded", "failed", "cancelled"].includes(record.status);
    for (const queue of QUEUES) {
      busy ||= (await service.redis.llen(`${PREFIX}:${queue}:active`)) > 0;
      busy ||= (await service.redis.zcard(`${PREFIX}:${queue}:waiting-children`)) > 0;
    }
    if (!busy) return;
    if (Date.now() > deadline) {
      throw new Error(`job ${id} is still ${record?.status} or has active BullMQ jobs after 20 s`);
    }
    await new Promise((wake) => setTimeout(wake, 50));
  }
}

/** Checks that storage under `jobs/<id>/` contains exactly what the job's record states. */
async function expectStorageMatchesRecord(id: string): Promise<void> {
  const record = await service.store.get(id);
  const stored = await service.storedKeys(`jobs/${id}/`);
  if (record === undefined) {
    expect(stored).toEqual([]);
    return;
  }
  const artifacts = stored.filter((key) => key.startsWith(`jobs/${id}/artifacts/`));
  if (record.status === "succeeded") {
    expect(artifacts).toEqual(
      (record.artifacts ?? []).map((artifact) => `jobs/${id}/artifacts/${artifact.name}`).sort(),
    );
    expect(stored.filter((key) => key.startsWith(`jobs/${id}/layers/`))).toEqual([]);
  } else {
    expect(record.artifacts).toBeUndefined();
    expect(artifacts).toEqual([]);
  }
}

describe("cancel racing completion", () => {
  test.each([["compressing"], ["writing"], ["publishing"]])(
    "cancel at %s stage",
    async (stage) => {
      const id = await submit();
      const cancel = await actWhen(id, isStage(stage), () =>
        fetch(`${service.url}/v1/jobs/${id}/cancel`, { method: "POST" }),
      );
      await waitForSettledJob(id);
      const record = await service.store.get(id);
      expect(["succeeded", "cancelled"]).toContain(record?.status);
      // A 409 means that the job had already succeeded. Otherwise the worker got the cancel flag.
      expect([200, 202, 409]).toContain(cancel?.status);
      if (cancel?.status === 409) expect(record?.status).toBe("succeeded");
      await expectStorageMatchesRecord(id);
    },
    30_000,
  );
});

describe("delete racing the run", () => {
  test.each([["compressing"], ["writing"], ["publishing"]])(
    "delete at %s stage",
    async (stage) => {
      const id = await submit();
      const deleted = await actWhen(id, isStage(stage), () =>
        fetch(`${service.url}/v1/jobs/${id}`, { method: "DELETE" }),
      );
      expect(deleted?.status).toBe(204);
      await waitForSettledJob(id);
      expect(await service.store.get(id)).toBeUndefined();
      expect((await fetch(`${service.url}/v1/jobs/${id}`)).status).toBe(404);
      expect(await service.storedKeys(`jobs/${id}/`)).toEqual([]);
    },
    30_000,
  );
});

describe("retry then cancel", () => {
  test("cancelled retry keeps no artifacts", async () => {
    const id = await submit();
    const first = await actWhen(id, isStage("compressing"), () =>
      fetch(`${service.url}/v1/jobs/${id}/cancel`, { method: "POST" }),
    );
    expect(first?.status).toBe(202);
    await waitForSettledJob(id);
    expect((await service.store.get(id))?.status).toBe("cancelled");
    await expectStorageMatchesRecord(id);

    const retry = await fetch(`${service.url}/v1/jobs/${id}/retry`, { method: "POST" });
    expect(retry.status).toBe(202);
    const second = await fetch(`${service.url}/v1/jobs/${id}/cancel`, { method: "POST" });
    expect([200, 202]).toContain(second.status);
    await waitForSettledJob(id);
    const events = (await readEvents(service.url, id)).events;
    expect((events.at(-1)?.data as { status?: string } | undefined)?.status).toBe("cancelled");
    expect((await service.store.get(id))?.status).toBe("cancelled");
    await expectStorageMatchesRecord(id);

    // A last retry runs to the end and leaves exactly the artifacts.
    expect((await fetch(`${service.url}/v1/jobs/${id}/retry`, { method: "POST" })).status).toBe(
      202,
    );
    const final = (await readEvents(service.url, id)).events.at(-1)?.data as
      | { status?: string }
      | undefined;
    expect(final?.status).toBe("succeeded");
    await waitForSettledJob(id);
    await expectStorageMatchesRecord(id);
    expect((await service.store.get(id))?.artifacts?.length).toBeGreaterThan(0);
  }, 30_000);
});
