/**
 * One pifa job over the stories260K fixture, fanned out into layer groups that two `pifa worker`
 * processes share. The artifact must be byte-identical to an offline `pifa compress` run.
 */

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { FIXTURE_DIR, fixtureParts, json, postUpload, waitForFinalStatus } from "../api/client.ts";
import { Harness, PREFIX } from "../api/harness.ts";
import { type CliProcess, killIfRunning, startCli, waitForLog, workerEnv } from "./processes.ts";

const OPTIONS = { method: "pifa", density: 0.5 };

let harness: Harness;
let referenceDir: string;
const workers: CliProcess[] = [];

beforeAll(async () => {
  harness = await Harness.start();
  await harness.startApi();
  referenceDir = await mkdtemp(join(tmpdir(), "pifa-scale-reference-"));
});

afterAll(async () => {
  await Promise.all(workers.map(killIfRunning));
  await harness.stop();
  await rm(referenceDir, { recursive: true, force: true });
});

test("two workers share one pifa job", { timeout: 120_000 }, async () => {
  const root = harness.storageRoot as string;
  for (let i = 0; i < 2; i++) {
    workers.push(
      startCli(
        ["worker"],
        workerEnv(harness.redisServer.url, root, PREFIX, {
          PIFA_LAYERS_PER_CHILD: "2",
          PIFA_WORKER_METRICS_PORT: "0",
        }),
      ),
    );
  }
  await Promise.all(
    workers.map((worker) =>
      waitForLog(worker, (line) => line.msg === "Worker started", '"Worker started"'),
    ),
  );

  const offline = startCli(
    ["compress", FIXTURE_DIR, "--out", referenceDir, "--method", "pifa", "--density", "0.5"],
    {},
  );
  const response = await postUpload(harness.url, { options: OPTIONS, files: await fixtureParts() });
  expect(response.status).toBe(202);
  const { id } = await json(response);

  const final = await waitForFinalStatus(harness.url, id);
  expect(final.status).toBe("succeeded");
  expect(await offline.exit).toBe(0);

  const groupsByWorker = workers.map(
    (worker) =>
      worker.logs.filter((line) => line.msg === "Layer group finished" && line.jobId === id).length,
  );
  expect(groupsByWorker[0]).toBeGreaterThan(0);
  expect(groupsByWorker[1]).toBeGreaterThan(0);

  const job = await json(await fetch(`${harness.url}/v1/jobs/${id}`));
  expect(job.progress.layersDone).toBe(job.progress.layersTotal);
  const totalGroups = Math.ceil(job.progress.layersTotal / 2);
  expect(groupsByWorker[0] + groupsByWorker[1]).toBe(totalGroups);

  const artifact = await fetch(`${harness.url}/v1/jobs/${id}/artifacts/model.safetensors`);
  expect(artifact.status).toBe(200);
  const served = Buffer.from(await artifact.arrayBuffer());
  const reference = await readFile(join(referenceDir, "model.safetensors"));
  expect(served.byteLength).toBe(reference.byteLength);
  expect(served.equals(reference)).toBe(true);

  // Each layer was computed once, by one of the workers, and counted in that worker's metrics.
  let layersCounted = 0;
  for (const worker of workers) {
    const listening = worker.logs.find((line) => line.msg === "Worker metrics listening");
    const metrics = await (await fetch(`${listening?.url}/metrics`)).text();
    const layers = metrics.match(/^pifa_worker_layers_processed_total\{method="pifa"\} (\d+)$/m);
    expect(layers).not.toBeNull();
    layersCounted += Number(layers?.[1]);
    expect(metrics).toMatch(
      /^pifa_worker_busy_seconds_total\{queue="compress-layers"\} [0-9.e-]+$/m,
    );
    expect(metrics).toContain('pifa_worker_layer_duration_seconds_count{method="pifa"}');
  }
  expect(layersCounted).toBe(job.progress.layersTotal);

  // Saved layers only serve the run, so the finished job keeps none.
  expect(await harness.storage.list(`jobs/${id}/layers/`)).toEqual([]);

  // Idle workers stop cleanly on SIGTERM.
  for (const worker of workers) worker.child.kill("SIGTERM");
  const codes = await Promise.all(workers.map((worker) => worker.exit));
  expect(codes).toEqual([0, 0]);
});
