/**
 * Breakdown of the upload path: the same multipart upload of a checkpoint
 * directory to in-process HTTP servers that each add one step of what the
 * API does with a checkpoint part. A server may drain the body, parse the
 * multipart body with Fastify and @fastify/multipart as the API does, hash
 * the file part with SHA-256, and write it with
 * `createWriteStream(..., { flush: true })`, LocalStorage's earlier write path. The write
 * steps run with the stream's default 16 KiB highWaterMark and with 8 MiB.
 * The last step stores through `LocalStorage.put`, which is what the API runs:
 * SHA-256 in its body meter, then writes in 8 MiB batches with a background
 * fdatasync every 64 MiB (src/storage/file-sink.ts).
 * The client runs in a child process (bench/upload-client.ts), on the same
 * two cores, so every rate is a lower bound for a remote client.
 *
 * Usage: npx tsx bench/upload-path.ts --checkpoint DIR [--repeats 3] [--json PATH]
 */

import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { type Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import multipart from "@fastify/multipart";
import Fastify from "fastify";
import { LocalStorage } from "../src/storage/local.ts";
import { median } from "./lib.ts";
import { MIB, machineInfo, measureDiskWrite } from "./process-stats.ts";

const execFileAsync = promisify(execFile);

interface Step {
  name: string;
  parse: boolean;
  hash: boolean;
  /** highWaterMark of the file write stream; undefined: no write. */
  writeHighWaterMark?: number;
  /** Store through LocalStorage.put as the API does; the other fields are ignored. */
  storage?: boolean;
}

const STEPS: Step[] = [
  { name: "drain", parse: false, hash: false },
  { name: "drain + write (16 KiB)", parse: false, hash: false, writeHighWaterMark: 16 * 1024 },
  { name: "drain + write (8 MiB)", parse: false, hash: false, writeHighWaterMark: 8 * MIB },
  { name: "parse", parse: true, hash: false },
  { name: "parse + SHA-256", parse: true, hash: true },
  {
    name: "parse + SHA-256 + write (16 KiB)",
    parse: true,
    hash: true,
    writeHighWaterMark: 16 * 1024,
  },
  {
    name: "parse + SHA-256 + write (8 MiB)",
    parse: true,
    hash: true,
    writeHighWaterMark: 8 * MIB,
  },
  { name: "parse + LocalStorage.put", parse: true, hash: false, storage: true },
];

function discard(): Writable {
  return new Writable({ write: (_chunk, _encoding, callback) => callback() });
}

function sha256Meter(): Transform {
  const hash = createHash("sha256");
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
}

/** Hashes and writes one body stream as the step defines; resolves when it is on disk. */
async function store(body: Readable, step: Step, directory: string): Promise<void> {
  if (step.storage) {
    await new LocalStorage(directory).put(`upload/${Math.random().toString(16).slice(2)}`, body);
    return;
  }
  const sink =
    step.writeHighWaterMark === undefined
      ? discard()
      : createWriteStream(path.join(directory, `${Math.random().toString(16).slice(2)}.bin`), {
          flush: true,
          highWaterMark: step.writeHighWaterMark,
        });
  if (step.hash) await pipeline(body, sha256Meter(), sink);
  else await pipeline(body, sink);
}

/** Serves one upload on a free loopback port and returns its URL and a close function. */
async function serveStep(step: Step, directory: string) {
  if (step.parse) {
    const app = Fastify({ bodyLimit: 1024 });
    await app.register(multipart, { limits: { fileSize: Number.MAX_SAFE_INTEGER } });
    app.post("/v1/jobs", async (request, reply) => {
      for await (const part of request.parts()) {
        if (part.type === "file") await store(part.file, step, directory);
      }
      return reply.code(202).send({ id: step.name });
    });
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    return { url, close: () => app.close() };
  }
  const server = http.createServer(async (request, response) => {
    await store(request, step, directory);
    response.writeHead(202, { "content-type": "application/json" });
    response.end(JSON.stringify({ id: step.name }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Runs bench/upload-client.ts in a child process and returns what it measured. */
async function uploadFromChild(
  url: string,
  checkpoint: string,
): Promise<{ checkpointBytes: number; seconds: number }> {
  const client = fileURLToPath(new URL("./upload-client.ts", import.meta.url));
  const { stdout } = await execFileAsync(process.execPath, [
    "--import",
    "tsx",
    client,
    url,
    checkpoint,
  ]);
  return JSON.parse(stdout);
}

async function uploadThrough(step: Step, checkpoint: string, directory: string): Promise<number> {
  const server = await serveStep(step, directory);
  try {
    const upload = await uploadFromChild(server.url, checkpoint);
    return upload.checkpointBytes / upload.seconds;
  } finally {
    await server.close();
    await rm(directory, { recursive: true, force: true });
    await mkdir(directory, { recursive: true });
  }
}

const { values } = parseArgs({
  options: {
    checkpoint: { type: "string" },
    repeats: { type: "string", default: "3" },
    json: { type: "string" },
  },
});
if (values.checkpoint === undefined) {
  throw new Error(
    "--checkpoint is missing: pass a checkpoint directory, e.g. one written by bench/synth-checkpoint.ts",
  );
}
const repeats = Number(values.repeats);
const directory = await mkdtemp(
  path.join(path.dirname(path.resolve(values.checkpoint)), "upload-"),
);
const machine = machineInfo();

const results: Array<{ step: string; bytesPerSecond: number; samples: number[] }> = [];
const diskSamples: number[] = [];
try {
  // Rounds over all steps, so drift in the disk's speed spreads over every step.
  const samples = new Map<string, number[]>(STEPS.map((step) => [step.name, []]));
  for (let round = 0; round < repeats; round++) {
    diskSamples.push((await measureDiskWrite(directory)).bytesPerSecond);
    for (const step of STEPS) {
      samples.get(step.name)?.push(await uploadThrough(step, values.checkpoint, directory));
    }
  }
  for (const step of STEPS) {
    const stepSamples = samples.get(step.name) ?? [];
    results.push({ step: step.name, bytesPerSecond: median(stepSamples), samples: stepSamples });
  }
} finally {
  await rm(directory, { recursive: true, force: true });
}

const disk = median(diskSamples);
console.log(
  `\ndisk sequential write ${(disk / MIB).toFixed(0)} MiB/s (median of ${diskSamples.length}: ${diskSamples.map((sample) => (sample / MIB).toFixed(0)).join(", ")})`,
);
// The disk's speed drifts, so each upload is set against the disk reading of its own round.
console.log("step                              MiB/s  of disk, median of per-round ratios");
for (const result of results) {
  const ratios = result.samples.map((sample, round) => sample / diskSamples[round]);
  Object.assign(result, { fractionOfDisk: median(ratios), fractionsOfDisk: ratios });
  console.log(
    `${result.step.padEnd(32)} ${(result.bytesPerSecond / MIB).toFixed(0).padStart(6)} ${median(ratios).toFixed(2).padStart(8)}`,
  );
}

const date = new Date().toISOString();
const out = values.json ?? path.join("bench", "results", `upload-path-${date.slice(0, 10)}.json`);
await mkdir(path.dirname(out), { recursive: true });
await writeFile(
  out,
  `${JSON.stringify(
    {
      date,
      machine: { ...machine, loadAverageAfter: os.loadavg() },
      repeats,
      diskWriteBytesPerSecond: diskSamples,
      steps: results,
    },
    null,
    2,
  )}\n`,
);
console.error(`wrote ${out}`);
