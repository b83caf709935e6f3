/**
 * End-to-end benchmark of the service on loopback. It starts an embedded
 * Redis, and for each checkpoint size a fresh `pifa api` and `pifa worker` as
 * separate processes, so each role's peak RSS is its own. It uploads a
 * synthetic LLaMA-7B-shaped F16 checkpoint over multipart HTTP, follows the
 * job until it succeeds, and deletes it. In the same run it measures the
 * disk's sequential write speed: 1 GiB with fsync, in the data directory, at
 * the start and before each upload. It also measures single-thread SHA-256
 * speed, because the API hashes every upload, and the loopback ceiling: the
 * same upload to a server that only drains the body.
 *
 * Usage: npm run bench:e2e -- [--layers 2,4] [--vocab 1024] [--method pifa] [--density 0.5]
 *   [--work DIR] [--keep] [--disk-repeats 3] [--json PATH]
 * `--keep` leaves the checkpoints in the work directory (shared with bench:memory).
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { findFreePort, startEmbeddedRedis } from "../src/redis/index.ts";
import { median } from "./lib.ts";
import {
  MIB,
  machineInfo,
  measureDiskWrite,
  RssMonitor,
  type RssSample,
  readCpuSeconds,
  readRss,
} from "./process-stats.ts";
import {
  deleteJob,
  type JobView,
  uploadCheckpoint,
  waitForJob,
  waitUntilReady,
} from "./service-client.ts";
import {
  BENCH_WORK_DIR,
  ensureSyntheticCheckpoint,
  LLAMA_7B,
  llamaTensors,
} from "./synth-checkpoint.ts";

/** Upload throughput target, as a fraction of the disk's sequential write speed. */
const UPLOAD_TARGET = 0.8;

interface Role {
  name: "api" | "worker";
  child: ChildProcess;
  monitor: RssMonitor;
  exited: Promise<number | null>;
}

function startRole(name: Role["name"], env: NodeJS.ProcessEnv, logDir: string): Role {
  const log = createWriteStream(path.join(logDir, `${name}.log`), { flags: "a" });
  const child = spawn(process.execPath, ["bin/pifa.js", name], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  if (child.pid === undefined) throw new Error(`failed to start pifa ${name}`);
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  return { name, child, monitor: new RssMonitor(child.pid), exited };
}

/** Reads the role's final RSS and CPU figures, then stops it with SIGTERM (SIGKILL after 30 s). */
async function stopRole(
  role: Role,
): Promise<RssSample & { maxSampledRssBytes: number; cpuSeconds: number }> {
  const sample = await role.monitor.sample();
  const cpuSeconds = await readCpuSeconds(role.monitor.pid);
  role.monitor.stop();
  role.child.kill("SIGTERM");
  const timer = setTimeout(() => role.child.kill("SIGKILL"), 30_000);
  await role.exited;
  clearTimeout(timer);
  return { ...sample, maxSampledRssBytes: role.monitor.maxRssBytes, cpuSeconds };
}

/**
 * Uploads the checkpoint to an HTTP server in this process that only drains
 * the body, and returns the bytes per second: the ceiling that the client,
 * loopback TCP and one shared event loop allow before the API does any work.
 */
async function measureLoopbackCeiling(dir: string): Promise<number> {
  const server = http.createServer(async (request, response) => {
    for await (const _chunk of request) {
      // Drained and dropped.
    }
    response.writeHead(202, { "content-type": "application/json" });
    response.end(JSON.stringify({ id: "drained" }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const upload = await uploadCheckpoint(`http://127.0.0.1:${port}`, dir, jobOptions);
    return upload.checkpointBytes / upload.seconds;
  } finally {
    server.close();
  }
}

/** Single-thread SHA-256 bytes per second over `bytes` of data, in 1 MiB updates like a stream. */
function measureSha256(bytes = 512 * MIB): number {
  const chunk = Buffer.alloc(MIB, 7);
  const hash = createHash("sha256");
  const started = performance.now();
  for (let done = 0; done < bytes; done += chunk.length) hash.update(chunk);
  hash.digest();
  return bytes / ((performance.now() - started) / 1000);
}

function medianSecondsByShape(job: JobView): Record<string, number> {
  const byShape = new Map<string, number[]>();
  for (const layer of job.report?.layers ?? []) {
    const key = layer.shape.join("x");
    byShape.set(key, [...(byShape.get(key) ?? []), layer.seconds]);
  }
  return Object.fromEntries([...byShape].map(([key, samples]) => [key, median(samples)]));
}

function parseCount(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`--${flag} needs positive integers, got ${JSON.stringify(text)}`);
  }
  return value;
}

const { values } = parseArgs({
  options: {
    layers: { type: "string", default: "2,4" },
    hidden: { type: "string", default: String(LLAMA_7B.hiddenSize) },
    intermediate: { type: "string", default: String(LLAMA_7B.intermediateSize) },
    heads: { type: "string", default: String(LLAMA_7B.numAttentionHeads) },
    vocab: { type: "string", default: "1024" },
    method: { type: "string", default: "pifa" },
    density: { type: "string", default: "0.5" },
    work: { type: "string", default: BENCH_WORK_DIR },
    keep: { type: "boolean", default: false },
    "disk-repeats": { type: "string", default: "3" },
    json: { type: "string" },
  },
});
const layerCounts = values.layers.split(",").map((text) => parseCount("layers", text));
const heads = parseCount("heads", values.heads);
const dims = {
  hiddenSize: parseCount("hidden", values.hidden),
  intermediateSize: parseCount("intermediate", values.intermediate),
  numAttentionHeads: heads,
  numKeyValueHeads: heads,
  vocabSize: parseCount("vocab", values.vocab),
};
const jobOptions = { method: values.method, density: Number(values.density) };
const work = values.work;
await mkdir(work, { recursive: true });
const machine = machineInfo();

const runDir = await mkdtemp(path.join(work, "e2e-"));
const dataDir = path.join(runDir, "data");
await mkdir(dataDir, { recursive: true });
const redis = await startEmbeddedRedis({ dataDir: path.join(runDir, "redis") });

const runs = [];
const diskSpeeds: number[] = [];
let sha256BytesPerSecond = 0;
let loopbackCeiling = 0;
try {
  for (let i = 0; i < Number(values["disk-repeats"]); i++) {
    const speed = await measureDiskWrite(dataDir);
    diskSpeeds.push(speed.bytesPerSecond);
    console.error(`disk sequential write: ${(speed.bytesPerSecond / MIB).toFixed(0)} MiB/s`);
  }
  sha256BytesPerSecond = measureSha256();
  console.error(`SHA-256, one thread: ${(sha256BytesPerSecond / MIB).toFixed(0)} MiB/s`);

  for (const layers of layerCounts) {
    const shape = { ...dims, numHiddenLayers: layers };
    const checkpoint = await ensureSyntheticCheckpoint(work, shape, "F16");
    if (loopbackCeiling === 0) {
      loopbackCeiling = await measureLoopbackCeiling(checkpoint.dir);
      console.error(`loopback ceiling: ${(loopbackCeiling / MIB).toFixed(0)} MiB/s`);
    }
    // The disk's speed drifts on shared machines, so it is measured again next to each upload.
    const diskBefore = await measureDiskWrite(dataDir);
    diskSpeeds.push(diskBefore.bytesPerSecond);
    const port = await findFreePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      REDIS_URL: redis.url,
      PIFA_DATA_DIR: dataDir,
      LOG_LEVEL: "info",
    };
    const baseUrl = `http://127.0.0.1:${port}`;
    const api = startRole("api", env, runDir);
    const worker = startRole("worker", env, runDir);
    try {
      await waitUntilReady(baseUrl);
      const idle = {
        api: await readRss(api.monitor.pid),
        worker: await readRss(worker.monitor.pid),
      };
      console.error(`uploading ${checkpoint.dir}`);
      const started = performance.now();
      const upload = await uploadCheckpoint(baseUrl, checkpoint.dir, jobOptions);
      const uploadRate = upload.checkpointBytes / upload.seconds;
      console.error(
        `upload: ${(upload.checkpointBytes / MIB).toFixed(0)} MiB in ${upload.seconds.toFixed(1)} s, ${(uploadRate / MIB).toFixed(0)} MiB/s`,
      );
      const { job, finishedAt } = await waitForJob(baseUrl, upload.job.id, {
        onProgress: (view) =>
          console.error(
            `  ${view.progress.stage} ${view.progress.layersDone}/${view.progress.layersTotal}`,
          ),
      });
      const apiRss = await stopRole(api);
      const workerRss = await stopRole(worker);
      const startedAt = Date.parse(job.startedAt ?? "");
      const finished = Date.parse(job.finishedAt ?? "");
      runs.push({
        layers,
        tensors: llamaTensors(shape, "F16").length,
        compressedTensors: job.report?.totals.layers ?? 0,
        checkpointBytes: upload.checkpointBytes,
        uploadSeconds: upload.seconds,
        uploadBytesPerSecond: uploadRate,
        /** Disk speed measured just before this upload. */
        diskBytesPerSecond: diskBefore.bytesPerSecond,
        uploadFractionOfDisk: 0,
        /** Upload start to the poll that saw `succeeded` (at most 0.5 s late). */
        totalSeconds: (finishedAt - started) / 1000,
        /** Worker's `startedAt` to `finishedAt`: open, compress, publish. */
        jobSeconds: (finished - startedAt) / 1000,
        /** Sum of the per-layer seconds in report.json. */
        layerSeconds: (job.report?.layers ?? []).reduce((sum, layer) => sum + layer.seconds, 0),
        medianLayerSeconds: medianSecondsByShape(job),
        api: { idle: idle.api, ...apiRss },
        worker: { idle: idle.worker, ...workerRss },
      });
      await deleteAfterRun(baseUrl, upload.job.id, env, runDir);
    } finally {
      for (const role of [api, worker]) {
        if (role.child.exitCode === null && role.child.signalCode === null) await stopRole(role);
      }
    }
    if (!values.keep) await rm(checkpoint.dir, { recursive: true, force: true });
  }
} finally {
  await redis.stop();
}

/** Deletes the job through a short-lived API process (the measured one is already stopped). */
async function deleteAfterRun(
  baseUrl: string,
  id: string,
  env: NodeJS.ProcessEnv,
  logDir: string,
): Promise<void> {
  const api = startRole("api", env, logDir);
  try {
    await waitUntilReady(baseUrl);
    await deleteJob(baseUrl, id);
  } finally {
    await stopRole(api);
  }
}

const disk = median(diskSpeeds);
for (const run of runs) run.uploadFractionOfDisk = run.uploadBytesPerSecond / disk;
console.log(
  `\ndisk sequential write ${(disk / MIB).toFixed(0)} MiB/s (median of ${diskSpeeds.length}), SHA-256 ${(sha256BytesPerSecond / MIB).toFixed(0)} MiB/s, loopback ceiling ${(loopbackCeiling / MIB).toFixed(0)} MiB/s`,
);
console.log(
  "layers  checkpoint MiB  upload MiB/s  of disk  total s  job s  layer s  worker CPU s  API peak MiB  worker peak MiB",
);
for (const run of runs) {
  console.log(
    `${String(run.layers).padStart(6)} ${(run.checkpointBytes / MIB).toFixed(0).padStart(15)} ${(run.uploadBytesPerSecond / MIB).toFixed(0).padStart(13)} ${run.uploadFractionOfDisk.toFixed(2).padStart(8)} ${run.totalSeconds.toFixed(1).padStart(8)} ${run.jobSeconds.toFixed(1).padStart(6)} ${run.layerSeconds.toFixed(1).padStart(8)} ${run.worker.cpuSeconds.toFixed(1).padStart(13)} ${(run.api.peakBytes / MIB).toFixed(0).padStart(13)} ${(run.worker.peakBytes / MIB).toFixed(0).padStart(16)}`,
  );
}
const first = runs[0];
const last = runs[runs.length - 1];
const comparison =
  runs.length > 1
    ? {
        layerRatio: last.layers / first.layers,
        totalSecondsRatio: last.totalSeconds / first.totalSeconds,
        layerSecondsRatio: last.layerSeconds / first.layerSeconds,
        workerCpuRatio: last.worker.cpuSeconds / first.worker.cpuSeconds,
        workerPeakRatio: last.worker.peakBytes / first.worker.peakBytes,
        apiPeakRatio: last.api.peakBytes / first.api.peakBytes,
      }
    : undefined;
if (comparison) {
  console.log(
    `${last.layers} vs ${first.layers} layers: total time x${comparison.totalSecondsRatio.toFixed(2)}, layer seconds x${comparison.layerSecondsRatio.toFixed(2)}, worker CPU x${comparison.workerCpuRatio.toFixed(2)}, worker peak RSS x${comparison.workerPeakRatio.toFixed(3)}, API peak RSS x${comparison.apiPeakRatio.toFixed(3)}`,
  );
}
console.log(
  `upload target: >= ${UPLOAD_TARGET * 100}% of disk speed; measured ${runs.map((run) => `${(run.uploadFractionOfDisk * 100).toFixed(0)}%`).join(", ")}`,
);

const date = new Date().toISOString();
const result = {
  date,
  machine: { ...machine, loadAverageAfter: os.loadavg() },
  jobOptions,
  dims,
  diskWriteBytesPerSecond: diskSpeeds,
  sha256BytesPerSecond,
  loopbackCeilingBytesPerSecond: loopbackCeiling,
  runs,
  comparison,
};
const out = values.json ?? path.join("bench", "results", `e2e-${date.slice(0, 10)}.json`);
await mkdir(path.dirname(out), { recursive: true });
await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
console.error(`wrote ${out}`);
await rm(runDir, { recursive: true, force: true });
