/**
 * `pifa serve`, `pifa api` and `pifa worker` as real processes: startup with the embedded Redis,
 * a job over HTTP, shutdown on SIGTERM, and the startup checks that must stop the service.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startRedis, type TestRedis } from "../helpers/redis.ts";
import { fixtureParts, json, postUpload, waitForFinalStatus } from "./client.ts";

const CLI = join(import.meta.dirname, "..", "..", "bin", "pifa.js");

let dataDir: string;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "pifa-serve-"));
});

afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await rm(dataDir, { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  /** pino log lines parsed so far. */
  logs: Array<Record<string, unknown>>;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** Starts the CLI with only the given environment (plus PATH and HOME) and collects its output. */
function startCli(args: string[], env: Record<string, string>): Running {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const logs: Array<Record<string, unknown>> = [];
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
    let end = stdout.indexOf("\n");
    while (end >= 0) {
      const line = stdout.slice(0, end);
      stdout = stdout.slice(end + 1);
      if (line.startsWith("{")) logs.push(JSON.parse(line));
      end = stdout.indexOf("\n");
    }
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  // "close" comes after the output streams ended, so every log line has been parsed by then.
  const exit = once(child, "close").then(([code]) => {
    children.delete(child);
    return code as number | null;
  });
  return { child, logs, stderr: () => stderr, exit };
}

/** Resolves with the first log line carrying `msg`, or rejects when the process exits first. */
async function waitForLog(running: Running, msg: string): Promise<Record<string, unknown>> {
  for (;;) {
    const line = running.logs.find((entry) => entry.msg === msg);
    if (line) return line;
    const exited = await Promise.race([
      running.exit.then(() => true),
      new Promise((r) => setTimeout(r, 50, false)),
    ]);
    if (exited) throw new Error(`process exited before logging "${msg}": ${running.stderr()}`);
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("serve runs job, exits on SIGTERM", async () => {
  const running = startCli(["serve"], { PIFA_DATA_DIR: dataDir, PORT: "0", LOG_LEVEL: "info" });
  const started = await waitForLog(running, "Service started");
  const redisStarted = await waitForLog(running, "Embedded redis-server started");
  const url = started.url as string;
  expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

  expect((await fetch(`${url}/readyz`)).status).toBe(200);
  const response = await postUpload(url, {
    options: { method: "pifa", density: 0.5 },
    files: await fixtureParts(),
  });
  expect(response.status).toBe(202);
  const { id } = await json(response);
  expect((await waitForFinalStatus(url, id)).status).toBe("succeeded");

  running.child.kill("SIGTERM");
  expect(await running.exit).toBe(0);
  expect(running.logs.map((line) => line.msg)).toContain("Service stopped");
  expect(processIsAlive(redisStarted.pid as number)).toBe(false);
});

test("serve keeps jobs across a restart", async () => {
  // The previous test left its job in the embedded Redis's append-only file under dataDir.
  const running = startCli(["serve"], { PIFA_DATA_DIR: dataDir, PORT: "0" });
  const url = (await waitForLog(running, "Service started")).url as string;
  const listed = await json(await fetch(`${url}/v1/jobs`));
  expect(listed.jobs).toHaveLength(1);
  expect(listed.jobs[0].status).toBe("succeeded");
  const artifact = await fetch(`${url}/v1/jobs/${listed.jobs[0].id}/artifacts/report.json`);
  expect(artifact.status).toBe(200);
  running.child.kill("SIGINT");
  expect(await running.exit).toBe(0);
});

test("invalid environment stops startup naming the variable", async () => {
  const running = startCli(["serve"], { PIFA_DATA_DIR: dataDir, PORT: "eighty" });
  expect(await running.exit).toBe(1);
  expect(running.stderr()).toContain("PORT");
  expect(running.stderr()).toContain('"eighty"');
});

test("api alone needs REDIS_URL", async () => {
  const running = startCli(["api"], { PIFA_DATA_DIR: dataDir, PORT: "0" });
  expect(await running.exit).toBe(1);
  const fatal = running.logs.find((line) => line.msg === "Service failed to start");
  expect((fatal?.err as { message: string } | undefined)?.message).toContain("REDIS_URL");
});

describe("external Redis", () => {
  let redisServer: TestRedis;

  beforeAll(async () => {
    redisServer = await startRedis();
  });

  afterAll(async () => {
    await redisServer.stop();
  });

  test("external Redis with eviction is rejected", async () => {
    const admin = new Redis(redisServer.url);
    await admin.config("SET", "maxmemory-policy", "allkeys-lru");
    try {
      const running = startCli(["serve"], {
        PIFA_DATA_DIR: dataDir,
        PORT: "0",
        REDIS_URL: redisServer.url,
      });
      expect(await running.exit).toBe(1);
      const fatal = running.logs.find((line) => line.msg === "Service failed to start");
      expect((fatal?.err as { message: string } | undefined)?.message).toContain("noeviction");
    } finally {
      await admin.config("SET", "maxmemory-policy", "noeviction");
      await admin.quit();
    }
  });

  test("api and worker processes share one Redis", async () => {
    const env = { PIFA_DATA_DIR: join(dataDir, "shared"), REDIS_URL: redisServer.url };
    const worker = startCli(["worker"], env);
    const api = startCli(["api"], { ...env, PORT: "0" });
    await waitForLog(worker, "Service started");
    const url = (await waitForLog(api, "Service started")).url as string;

    const response = await postUpload(url, {
      options: { method: "svd", density: 0.5 },
      files: await fixtureParts(),
    });
    const { id } = await json(response);
    expect((await waitForFinalStatus(url, id)).status).toBe("succeeded");

    api.child.kill("SIGTERM");
    worker.child.kill("SIGTERM");
    expect(await api.exit).toBe(0);
    expect(await worker.exit).toBe(0);
    // The worker process ran the job, and its log lines carry the job id. Checked after the exit,
    // once all output has been read.
    const succeeded = (line: Record<string, unknown>) =>
      line.msg === "Job succeeded" && line.jobId === id;
    expect(worker.logs.some(succeeded)).toBe(true);
    expect(api.logs.some(succeeded)).toBe(false);
  });
});
