/**
 * API keys and tenant isolation over real HTTP and a real Redis: two tenants and an administrator.
 * No worker runs. A finished job is produced by publishing an artifact to storage and moving the
 * record to `succeeded` through the job store, as a worker would.
 */

import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { hashApiKey } from "../../src/api/auth.ts";
import { artifactKey } from "../../src/jobs/model.ts";
import { fixtureParts, json, postJson, postUpload } from "./client.ts";
import { Harness } from "./harness.ts";

const KEY_A = "team-a-key-0123456789abcdef";
const KEY_B = "team-b-key-0123456789abcdef";
const KEY_ADMIN = "ops-admin-key-0123456789abcdef";

const PIFA_HALF = { method: "pifa", density: 0.5 };

let harness: Harness;
let url: string;

function bearer(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}` };
}

async function call(path: string, key: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${url}${path}`, { ...init, headers: { ...bearer(key), ...init.headers } });
}

async function submitUpload(key: string, headers: Record<string, string> = {}): Promise<string> {
  const response = await postUpload(url, {
    options: PIFA_HALF,
    files: await fixtureParts(),
    headers: { ...bearer(key), ...headers },
  });
  const body = await json(response);
  expect(response.status, JSON.stringify(body)).toBe(202);
  return body.id as string;
}

/** Publishes one artifact and marks the job succeeded, as the worker does at the end of a job. */
async function finishJob(id: string): Promise<void> {
  const bytes = Buffer.from('{"ok":true}');
  const stored = await harness.storage.put(artifactKey(id, "report.json"), Readable.from([bytes]));
  await harness.store.transition(id, {
    from: ["queued"],
    to: "succeeded",
    fields: {
      finishedAt: new Date().toISOString(),
      artifacts: [{ name: "report.json", size: stored.size, sha256: stored.sha256 }],
    },
  });
}

beforeAll(async () => {
  harness = await Harness.start({
    apiKeys: [
      { tenant: "team-a", admin: false, sha256: hashApiKey(KEY_A) },
      { tenant: "team-b", admin: false, sha256: hashApiKey(KEY_B) },
      { tenant: "ops", admin: true, sha256: hashApiKey(KEY_ADMIN) },
    ],
  });
  url = await harness.startApi();
});

afterAll(async () => {
  await harness.stop();
});

describe("authentication", () => {
  const rejected: Array<[string, Record<string, string>]> = [
    ["missing header", {}],
    ["unknown key", bearer("not-a-configured-key-0000")],
    ["basic scheme", { authorization: `Basic ${Buffer.from(`a:${KEY_A}`).toString("base64")}` }],
    ["key with suffix", bearer(`${KEY_A}x`)],
    ["empty bearer", { authorization: "Bearer " }],
  ];

  test.each(rejected)("%s gets 401", async (_case, headers) => {
    const response = await fetch(`${url}/v1/jobs`, { headers });
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toMatch(/^Bearer\b/);
    const body = await json(response);
    expect(body.error.code).toBe("UNAUTHORIZED");
    expect(JSON.stringify(body)).not.toContain(KEY_A);
  });

  test("every protected route needs a key", async () => {
    const id = "01JAAAAAAAAAAAAAAAAAAAAAAA";
    const routes: Array<[string, string]> = [
      ["POST", "/v1/jobs"],
      ["GET", "/v1/jobs"],
      ["GET", `/v1/jobs/${id}`],
      ["DELETE", `/v1/jobs/${id}`],
      ["POST", `/v1/jobs/${id}/cancel`],
      ["POST", `/v1/jobs/${id}/retry`],
      ["GET", `/v1/jobs/${id}/events`],
      ["GET", `/v1/jobs/${id}/artifacts`],
      ["GET", `/v1/jobs/${id}/artifacts/report.json`],
      ["HEAD", `/v1/jobs/${id}/artifacts/report.json`],
    ];
    for (const [method, path] of routes) {
      const response = await fetch(`${url}${path}`, { method });
      expect(response.status, `${method} ${path}`).toBe(401);
      await response.arrayBuffer();
    }
  });

  test("encoded or doubled paths still need a key", async () => {
    for (const path of ["/%761/jobs", "/v1/%6Aobs", "//v1/jobs", "/v1//jobs", "/v1/jobs/"]) {
      const response = await fetch(`${url}${path}`);
      expect([401, 404], path).toContain(response.status);
      const body = await json(response);
      expect(body.jobs, path).toBeUndefined();
    }
  });

  test("health and docs routes need no key", async () => {
    for (const path of ["/livez", "/readyz", "/metrics", "/openapi.yaml"]) {
      const response = await fetch(`${url}${path}`);
      expect(response.status, path).toBe(200);
      await response.arrayBuffer();
    }
  });

  test("valid key is accepted case-insensitively by scheme", async () => {
    const response = await fetch(`${url}/v1/jobs`, {
      headers: { authorization: `bearer ${KEY_A}` },
    });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
  });
});

describe("tenant isolation", () => {
  let jobA: string;
  let jobB: string;

  beforeAll(async () => {
    jobA = await submitUpload(KEY_A);
    jobB = await submitUpload(KEY_B);
    await finishJob(jobA);
  });

  test("job view carries the tenant", async () => {
    const response = await call(`/v1/jobs/${jobA}`, KEY_A);
    expect(response.status).toBe(200);
    const body = await json(response);
    expect(body.tenant).toBe("team-a");
    expect(body.status).toBe("succeeded");
  });

  test("other tenant gets 404 on every job route", async () => {
    const routes: Array<[string, string]> = [
      ["GET", `/v1/jobs/${jobA}`],
      ["GET", `/v1/jobs/${jobA}/events`],
      ["GET", `/v1/jobs/${jobA}/artifacts`],
      ["GET", `/v1/jobs/${jobA}/artifacts/report.json`],
      ["HEAD", `/v1/jobs/${jobA}/artifacts/report.json`],
      ["POST", `/v1/jobs/${jobA}/cancel`],
      ["POST", `/v1/jobs/${jobA}/retry`],
      ["DELETE", `/v1/jobs/${jobA}`],
    ];
    for (const [method, path] of routes) {
      const response = await call(path, KEY_B, { method });
      expect(response.status, `${method} ${path}`).toBe(404);
      if (method !== "HEAD") {
        const body = await json(response);
        expect(body.error.code, `${method} ${path}`).toBe("JOB_NOT_FOUND");
      }
    }
    expect((await harness.store.get(jobA))?.status).toBe("succeeded");
  });

  test("404 for another tenant matches a missing job", async () => {
    const other = await json(await call(`/v1/jobs/${jobA}`, KEY_B));
    const missing = await json(await call("/v1/jobs/01JAAAAAAAAAAAAAAAAAAAAAAA", KEY_B));
    expect(other.error.code).toBe(missing.error.code);
    expect(other.error.message.replace(jobA, "ID")).toBe(
      missing.error.message.replace("01JAAAAAAAAAAAAAAAAAAAAAAA", "ID"),
    );
  });

  test("owner reads its artifact", async () => {
    const response = await call(`/v1/jobs/${jobA}/artifacts/report.json`, KEY_A);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('{"ok":true}');
  });

  test("administrator reads any tenant's job", async () => {
    const response = await call(`/v1/jobs/${jobB}`, KEY_ADMIN);
    expect(response.status).toBe(200);
    expect((await json(response)).tenant).toBe("team-b");
  });

  test("list shows only the caller's jobs", async () => {
    const listA = await json(await call("/v1/jobs", KEY_A));
    const listB = await json(await call("/v1/jobs", KEY_B));
    const idsA = listA.jobs.map((job: { id: string }) => job.id);
    const idsB = listB.jobs.map((job: { id: string }) => job.id);
    expect(idsA).toContain(jobA);
    expect(idsA).not.toContain(jobB);
    expect(idsB).toContain(jobB);
    expect(idsB).not.toContain(jobA);
  });

  test("tenant filter is ignored for non-administrators", async () => {
    const list = await json(await call("/v1/jobs?tenant=team-b", KEY_A));
    const tenants = new Set(list.jobs.map((job: { tenant: string }) => job.tenant));
    expect([...tenants]).toEqual(["team-a"]);
  });

  test("administrator lists all and filters by tenant", async () => {
    const all = await json(await call("/v1/jobs", KEY_ADMIN));
    const ids = all.jobs.map((job: { id: string }) => job.id);
    expect(ids).toContain(jobA);
    expect(ids).toContain(jobB);
    const filtered = await json(await call("/v1/jobs?tenant=team-b&status=queued", KEY_ADMIN));
    expect(filtered.jobs.map((job: { id: string }) => job.id)).toEqual([jobB]);
  });

  test("idempotency keys are scoped per tenant", async () => {
    const headers = { "idempotency-key": "shared-key-1" };
    const firstA = await submitUpload(KEY_A, headers);
    const againA = await submitUpload(KEY_A, headers);
    const firstB = await submitUpload(KEY_B, headers);
    expect(againA).toBe(firstA);
    expect(firstB).not.toBe(firstA);
    expect((await harness.store.get(firstB))?.tenant).toBe("team-b");
  });

  test("source outside the tenant prefix is rejected", async () => {
    for (const source of ["models/llama", "tenants/team-b/llama", "tenants/team-a-other/llama"]) {
      const response = await postJson(
        url,
        "/v1/jobs",
        { source, options: PIFA_HALF },
        bearer(KEY_A),
      );
      expect(response.status, source).toBe(400);
      const body = await json(response);
      expect(body.error.code, source).toBe("INVALID_SOURCE");
      expect(body.error.message, source).toContain("tenants/team-a/");
    }
  });

  test("source escaping the tenant prefix is rejected", async () => {
    const response = await postJson(
      url,
      "/v1/jobs",
      { source: "tenants/team-a/../team-b/llama", options: PIFA_HALF },
      bearer(KEY_A),
    );
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe("INVALID_SOURCE");
  });

  test("source inside the tenant prefix passes the prefix check", async () => {
    const response = await postJson(
      url,
      "/v1/jobs",
      { source: "tenants/team-a/absent-model", options: PIFA_HALF },
      bearer(KEY_A),
    );
    const body = await json(response);
    // The prefix contains no checkpoint, so the request fails later, on the missing files.
    expect(body.error.message).not.toContain("outside this tenant's storage prefix");
  });

  test("owner deletes its job", async () => {
    const response = await call(`/v1/jobs/${jobB}`, KEY_B, { method: "DELETE" });
    expect(response.status).toBe(204);
    expect(await harness.store.get(jobB)).toBeUndefined();
  });
});
