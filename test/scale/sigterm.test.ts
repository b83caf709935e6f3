/**
 * SIGTERM to a `pifa worker` in the middle of a fanned-out job: the worker hands its layer group
 * back and exits, the job is left queued (not running) with its saved layers, and a second worker
 * finishes it.
 */

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { json, postUpload, waitForFinalStatus } from "../api/client.ts";
import { Harness, PREFIX } from "../api/harness.ts";
import { writeSyntheticLlama } from "../api/synthetic.ts";
import { type CliProcess, killIfRunning, startCli, waitForLog, workerEnv } from "./processes.ts";

let harness: Harness;
let checkpointDir: string;
const workers: CliProcess[] = [];

beforeAll(async () => {
  harness = await Harness.start();
  await harness.startApi();
  checkpointDir = await mkdtemp(join(tmpdir(), "pifa-scale-sigterm-"));
  // 28 linear layers of up to [512, 384], so the job runs long enough to be interrupted.
  await writeSyntheticLlama(checkpointDir, {
    layers: 4,
    hidden: 384,
    intermediate: 512,
    vocab: 64,
  });
});

afterAll(async () => {
  await Promise.all(workers.map(killIfRunning));
  await harness.stop();
  await rm(checkpointDir, { recursive: true, force: true });
});

function startWorker(): CliProcess {
  const env = workerEnv(harness.redisServer.url, harness.storageRoot as string, PREFIX, {
    PIFA_LAYERS_PER_CHILD: "4",
  });
  const worker = startCli(["worker"], env);
  workers.push(worker);
  return worker;
}

test("SIGTERM hands a job back", { timeout: 120_000 }, async () => {
  const first = startWorker();
  await waitForLog(first, (line) => line.msg === "Worker started", '"Worker started"');

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
    options: { method: "pifa", density: 0.5 },
    files,
  });
  expect(response.status).toBe(202);
  const { id } = await json(response);

  // SIGTERM lands while the second group runs. Between two groups the worker has no group to
  // hand back, and the job would stay shown as running.
  await waitForLog(
    first,
    (line) => line.msg === "Layer group started" && line.jobId === id && Number(line.first) > 0,
    "a second layer group",
  );
  first.child.kill("SIGTERM");
  expect(await first.exit).toBe(0);
  expect(first.logs.some((line) => line.msg === "Worker stopped")).toBe(true);

  const handedBack = await harness.store.get(id);
  expect(handedBack?.status).toBe("queued");
  expect(handedBack?.progress.layersDone).toBeGreaterThan(0);
  expect(handedBack?.progress.layersDone).toBeLessThan(28);
  const saved = await harness.storage.list(`jobs/${id}/layers/`);
  expect(saved.length).toBe(handedBack?.progress.layersDone);

  const second = startWorker();
  const final = await waitForFinalStatus(harness.url, id);
  expect(final.status).toBe("succeeded");
  expect(second.logs.some((line) => line.msg === "Layer group finished" && line.jobId === id)).toBe(
    true,
  );
  const job = await json(await fetch(`${harness.url}/v1/jobs/${id}`));
  expect(job.progress.layersDone).toBe(28);
  expect(job.report.totals.layers).toBe(28);

  second.child.kill("SIGTERM");
  expect(await second.exit).toBe(0);
});
