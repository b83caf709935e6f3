/**
 * Load test of the service on loopback: `pifa api` and `pifa worker` child processes on an
 * embedded Redis and local storage, under concurrent fixture uploads, status polls and
 * server-sent-event clients. Prints and saves error counts, latency percentiles and the RSS of
 * each process over time.
 *
 *     npx tsx bench/load.ts [seconds]      # default 180
 *
 * Every server is started here on 127.0.0.1 and stopped at the end.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import autocannon, { type Result } from "autocannon";
import { startEmbeddedRedis } from "../src/redis/embedded.ts";
import { findFreePort } from "../src/redis/free-port.ts";

const REPOSITORY = path.join(import.meta.dirname, "..");
const FIXTURE = path.join(REPOSITORY, "test", "fixtures", "stories260K");
const UPLOADS_PER_SECOND = 1;
const POLLS_PER_SECOND = 200;
const SSE_CLIENTS = 20;
const RSS_SAMPLE_MS = 5000;

interface RssSample {
  second: number;
  apiMiB: number;
  workerMiB: number;
  redisMiB: number;
}

/** Resident set size of `pid` in MiB, from /proc (Linux). */
async function rssMiB(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const kib = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN);
  return Math.round((kib / 1024) * 10) / 10;
}

function startRole(role: "api" | "worker", env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, [path.join(REPOSITORY, "bin", "pifa.js"), role], {
    cwd: REPOSITORY,
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "inherit"],
  });
  child.once("exit", (code, signal) => {
    if (code !== 0 && signal !== "SIGTERM") {
      console.error(`pifa ${role} exited early (code ${code}, signal ${signal})`);
    }
  });
  return child;
}

async function waitForReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(`${url}/readyz`).then(
      (response) => response.status === 200,
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(`the API at ${url} was not ready after ${timeoutMs} ms`);
    await new Promise((wake) => setTimeout(wake, 200));
  }
}

/** The fixture upload as one multipart body with its content type. */
async function fixtureUpload(): Promise<{ body: Buffer; contentType: string }> {
  const form = new FormData();
  form.append("options", JSON.stringify({ method: "pifa", density: 0.5 }));
  for (const [part, name] of [
    ["checkpoint", "model.safetensors"],
    ["config", "config.json"],
  ]) {
    form.append(part, new Blob([await readFile(path.join(FIXTURE, name))]), name);
  }
  const request = new Request("http://127.0.0.1/", { method: "POST", body: form });
  return {
    body: Buffer.from(await request.arrayBuffer()),
    contentType: request.headers.get("content-type") ?? "",
  };
}

/**
 * Keeps `count` event-stream clients open on the newest job, each reopening on the newest job
 * when its stream ends. Counts connections, events and errors (a non-200 response or a socket
 * error).
 */
function runSseClients(url: string, count: number, newestJob: () => string | undefined) {
  const stats = { connections: 0, events: 0, errors: 0, statuses: {} as Record<string, number> };
  let stopped = false;
  const requests = new Set<http.ClientRequest>();
  const open = () => {
    const id = newestJob();
    if (stopped) return;
    if (id === undefined) {
      setTimeout(open, 200);
      return;
    }
    const request = http.get(`${url}/v1/jobs/${id}/events`, (response) => {
      stats.connections++;
      const status = String(response.statusCode);
      stats.statuses[status] = (stats.statuses[status] ?? 0) + 1;
      if (response.statusCode !== 200) stats.errors++;
      response.on("data", (chunk: Buffer) => {
        stats.events += chunk.toString("utf8").split("\nevent: ").length - 1;
      });
      response.on("end", () => {
        requests.delete(request);
        open();
      });
    });
    requests.add(request);
    request.on("error", () => {
      requests.delete(request);
      if (!stopped) {
        stats.errors++;
        setTimeout(open, 200);
      }
    });
  };
  for (let i = 0; i < count; i++) open();
  return {
    stats,
    stop() {
      stopped = true;
      for (const request of requests) request.destroy();
    },
  };
}

/** Counts a response under its status, and under its error code for error responses. */
function count(counts: Record<string, number>, status: number, body: string): void {
  let key = String(status);
  if (status >= 400) {
    try {
      key += ` ${JSON.parse(body).error?.code}`;
    } catch {
      key += " (no JSON body)";
    }
  }
  counts[key] = (counts[key] ?? 0) + 1;
}

function summarize(name: string, result: Result) {
  return {
    name,
    requests: result.requests.total,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    latencyMs: {
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      max: result.latency.max,
    },
  };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 180);
  if (!Number.isInteger(seconds) || seconds < 10) {
    throw new Error(`invalid duration ${process.argv[2]}: pass whole seconds, at least 10`);
  }
  const root = await mkdtemp(path.join(os.tmpdir(), "pifa-load-"));
  const redis = await startEmbeddedRedis({ dataDir: path.join(root, "redis") });
  const port = await findFreePort();
  const url = `http://127.0.0.1:${port}`;
  const env = {
    REDIS_URL: redis.url,
    PIFA_STORAGE_URL: pathToFileURL(path.join(root, "storage")).href,
    PIFA_DATA_DIR: path.join(root, "data"),
    HOST: "127.0.0.1",
    PORT: String(port),
    LOG_LEVEL: "warn",
    PIFA_BLAS_THREADS: "1",
    // Keeps storage bounded: finished jobs beyond the newest 100 go at the next sweep.
    PIFA_JOB_RETENTION_COUNT: "100",
    // One anonymous client makes every request, so per-tenant limits would reject most of them.
    // This test measures the service without them.
    PIFA_RATE_LIMIT_PER_MINUTE: "0",
    PIFA_MAX_ACTIVE_JOBS_PER_TENANT: "0",
    PIFA_MAX_STORED_BYTES_PER_TENANT: "0",
  };
  const api = startRole("api", env);
  const worker = startRole("worker", env);
  const samples: RssSample[] = [];
  const started = Date.now();
  const sample = async () => {
    samples.push({
      second: Math.round((Date.now() - started) / 1000),
      apiMiB: await rssMiB(api.pid),
      workerMiB: await rssMiB(worker.pid),
      redisMiB: await rssMiB(redis.pid),
    });
  };

  try {
    await waitForReady(url, 30_000);
    await sample();
    const sampler = setInterval(() => void sample(), RSS_SAMPLE_MS);
    const upload = await fixtureUpload();
    let newestJob: string | undefined;
    const sse = runSseClients(url, SSE_CLIENTS, () => newestJob);

    const uploadStatuses: Record<string, number> = {};
    const pollStatuses: Record<string, number> = {};
    const [uploads, polls] = await Promise.all([
      autocannon({
        url,
        connections: 2,
        duration: seconds,
        overallRate: UPLOADS_PER_SECOND,
        timeout: 30,
        requests: [
          {
            method: "POST",
            path: "/v1/jobs",
            headers: { "content-type": upload.contentType },
            body: upload.body,
            onResponse: (status, body) => {
              count(uploadStatuses, status, body);
              if (status === 202) newestJob = JSON.parse(body).id;
            },
          },
        ],
      }),
      autocannon({
        url,
        connections: 8,
        duration: seconds,
        overallRate: POLLS_PER_SECOND,
        requests: [
          {
            method: "GET",
            path: "/v1/jobs?limit=20",
            onResponse: (status, body) => count(pollStatuses, status, body),
            setupRequest: (request) => ({
              ...request,
              path: newestJob === undefined ? "/v1/jobs?limit=20" : `/v1/jobs/${newestJob}`,
            }),
          },
        ],
      }),
    ]);
    sse.stop();
    clearInterval(sampler);
    await sample();

    const jobs = (await (await fetch(`${url}/v1/jobs?limit=100`)).json()) as {
      jobs?: Array<{ status: string }>;
    };
    const result = {
      date: new Date().toISOString(),
      machine: `${os.cpus()[0]?.model ?? "unknown CPU"}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
      seconds,
      load: {
        uploadsPerSecond: UPLOADS_PER_SECOND,
        pollsPerSecond: POLLS_PER_SECOND,
        sseClients: SSE_CLIENTS,
      },
      uploads: { ...summarize("uploads", uploads), statuses: uploadStatuses },
      polls: { ...summarize("polls", polls), statuses: pollStatuses },
      sse: sse.stats,
      lastJobStatuses: (jobs.jobs ?? []).reduce<Record<string, number>>((counts, job) => {
        counts[job.status] = (counts[job.status] ?? 0) + 1;
        return counts;
      }, {}),
      rss: samples,
    };
    const output = path.join(REPOSITORY, "bench", "results", "load.json");
    await mkdir(path.dirname(output), { recursive: true });
    await writeFile(output, `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify({ ...result, rss: [samples[0], samples.at(-1)] }, null, 2));
  } finally {
    api.kill("SIGTERM");
    worker.kill("SIGTERM");
    await Promise.all(
      [api, worker].map(
        (child) =>
          new Promise((resolve) =>
            child.exitCode !== null ? resolve(undefined) : child.once("exit", resolve),
          ),
      ),
    );
    await redis.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
