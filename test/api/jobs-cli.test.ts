import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureParts, json, postUpload, waitForFinalStatus } from "./client.ts";
import { Harness } from "./harness.ts";

const run = promisify(execFile);
const PIFA = path.resolve("bin/pifa.js");

async function pifaJobs(...args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [PIFA, "jobs", ...args], {
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

let harness: Harness;
let jobId: string;

beforeAll(async () => {
  harness = await Harness.start();
  await harness.startApi();
  harness.startWorker();
  const response = await postUpload(harness.url, {
    options: { method: "pifa", density: 0.5 },
    files: await fixtureParts(),
  });
  expect(response.status).toBe(202);
  jobId = (await json(response)).id;
  await waitForFinalStatus(harness.url, jobId);
});

afterAll(async () => {
  await harness.stop();
});

describe("pifa jobs", () => {
  it("list --json returns the job", async () => {
    const { code, stdout } = await pifaJobs("--url", harness.url, "--json", "list");
    expect(code).toBe(0);
    const page = JSON.parse(stdout);
    expect(page.jobs.map((job: { id: string }) => job.id)).toContain(jobId);
  });

  it("show prints status and artifacts", async () => {
    const { code, stdout } = await pifaJobs("--url", harness.url, "show", jobId);
    expect(code).toBe(0);
    expect(stdout).toContain(`id          ${jobId}`);
    expect(stdout).toContain("status      succeeded");
    expect(stdout).toMatch(/artifact {4}model\.safetensors \d+ bytes sha256 [0-9a-f]{64}/);
  });

  it("keeps a path prefix of --url", async () => {
    const { code, stderr } = await pifaJobs("--url", `${harness.url}/prefix`, "show", jobId);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^error ROUTE_NOT_FOUND/);
  });

  it("cancel of a finished job exits 1 with the code", async () => {
    const { code, stderr } = await pifaJobs("--url", harness.url, "cancel", jobId);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^error JOB_FINISHED: /);
  });

  it("rejects an invalid --url", async () => {
    const { code, stderr } = await pifaJobs("--url", "ftp://127.0.0.1:1", "list");
    expect(code).toBe(1);
    expect(stderr).toContain("INVALID_URL");
  });
});
