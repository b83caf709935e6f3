/** Liveness, readiness and metrics over real HTTP. */

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { LocalStorage } from "../../src/storage/local.ts";
import { fixtureParts, json, postUpload, waitForFinalStatus } from "./client.ts";
import { Harness } from "./harness.ts";

let harness: Harness;
let url: string;

beforeAll(async () => {
  harness = await Harness.start();
  url = await harness.startApi();
  harness.startWorker();
});

afterAll(async () => {
  await harness.stop();
});

test("livez answers ok", async () => {
  const response = await fetch(`${url}/livez`);
  expect(response.status).toBe(200);
  expect(await json(response)).toEqual({ status: "ok" });
  expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
});

test("client request id is echoed", async () => {
  const response = await fetch(`${url}/livez`, { headers: { "x-request-id": "trace-42" } });
  expect(response.headers.get("x-request-id")).toBe("trace-42");
  const forged = await fetch(`${url}/livez`, {
    headers: { "x-request-id": "bad id; level=fatal" },
  });
  expect(forged.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
});

test("readyz reports both backends", async () => {
  const response = await fetch(`${url}/readyz`);
  expect(response.status).toBe(200);
  expect(await json(response)).toEqual({
    status: "ready",
    checks: { redis: "ok", storage: "ok" },
  });
});

test("metrics count requests and jobs", async () => {
  const submitted = await postUpload(url, {
    options: { method: "svd", density: 0.5 },
    files: await fixtureParts(),
  });
  const { id } = await json(submitted);
  expect((await waitForFinalStatus(url, id)).status).toBe("succeeded");
  await fetch(`${url}/v1/jobs/${id}`);
  await fetch(`${url}/v1/jobs/not-a-job`);

  const response = await fetch(`${url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/plain");
  const text = await response.text();
  expect(text).toMatch(
    /pifa_http_requests_total\{route="\/v1\/jobs\/:id",method="GET",status="200"\} 1/,
  );
  expect(text).toMatch(
    /pifa_http_requests_total\{route="\/v1\/jobs\/:id",method="GET",status="404"\} 1/,
  );
  expect(text).toMatch(
    /pifa_http_requests_total\{route="\/v1\/jobs",method="POST",status="202"\} 1/,
  );
  expect(text).toMatch(
    /pifa_http_request_duration_seconds_count\{route="\/livez",method="GET",status="200"\} 3/,
  );
  // The event stream that waitForFinalStatus read is counted once it ended.
  expect(text).toMatch(
    /pifa_http_requests_total\{route="\/v1\/jobs\/:id\/events",method="GET",status="200"\} 1/,
  );
  expect(text).toContain('pifa_jobs{status="succeeded"} 1');
  expect(text).toContain('pifa_jobs{status="queued"} 0');
  expect(text).toContain("process_cpu_seconds_total");
});

test("readyz is 503 when storage is unusable", async () => {
  const file = join(harness.storageRoot ?? "", "not-a-directory");
  await writeFile(file, "x");
  const broken = await Harness.start({ storage: new LocalStorage(join(file, "root")) });
  try {
    const brokenUrl = await broken.startApi();
    const response = await fetch(`${brokenUrl}/readyz`);
    expect(response.status).toBe(503);
    const body = await json(response);
    expect(body.status).toBe("unavailable");
    expect(body.checks.redis).toBe("ok");
    expect(body.checks.storage).toContain("not a writable directory");
  } finally {
    await broken.stop();
  }
});

test("readyz is 503 when Redis is down", async () => {
  const other = await Harness.start();
  try {
    const otherUrl = await other.startApi();
    await other.redisServer.stop();
    const response = await fetch(`${otherUrl}/readyz`);
    expect(response.status).toBe(503);
    const body = await json(response);
    expect(body.checks.redis).not.toBe("ok");
    expect(body.checks.storage).toBe("ok");
  } finally {
    await other.stopApi().catch(() => {});
    other.redis.disconnect();
  }
});
