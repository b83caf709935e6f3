/**
 * Per-tenant limits over real HTTP and a real Redis: request rate, active jobs and the storage
 * quota, each rejected with 429 and Retry-After. No worker runs, so submitted jobs stay queued.
 */

import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { buildApiApp } from "../../src/api/app.ts";
import { hashApiKey } from "../../src/api/auth.ts";
import { artifactKey } from "../../src/jobs/model.ts";
import { JobQueue } from "../../src/jobs/queue.ts";
import { fixtureParts, json, postUpload } from "./client.ts";
import { Harness, PREFIX, RETRY } from "./harness.ts";

const PIFA_HALF = { method: "pifa", density: 0.5 };

function bearer(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}` };
}

function tenantKey(tenant: string): string {
  return `${tenant}-key-0123456789abcdef`;
}

function harnessFor(tenants: string[], limits: Parameters<typeof Harness.start>[0]) {
  return Harness.start({
    ...limits,
    apiKeys: tenants.map((tenant) => ({
      tenant,
      admin: false,
      sha256: hashApiKey(tenantKey(tenant)),
    })),
  });
}

async function upload(url: string, tenant: string): Promise<Response> {
  return postUpload(url, {
    options: PIFA_HALF,
    files: await fixtureParts(),
    headers: bearer(tenantKey(tenant)),
  });
}

describe("request rate", () => {
  const PER_MINUTE = 3;
  let harness: Harness;
  let url: string;

  beforeAll(async () => {
    harness = await harnessFor(["team-a", "team-b"], {
      tenantLimits: { rateLimitPerMinute: PER_MINUTE, maxActiveJobs: 0, maxStoredBytes: 0 },
    });
    url = await harness.startApi();
  });

  afterAll(async () => {
    await harness.stop();
  });

  test("requests past the bucket get 429 with Retry-After", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < PER_MINUTE; i++) {
      const response = await fetch(`${url}/v1/jobs`, { headers: bearer(tenantKey("team-a")) });
      statuses.push(response.status);
      await response.arrayBuffer();
    }
    expect(statuses).toEqual([200, 200, 200]);

    const limited = await fetch(`${url}/v1/jobs`, { headers: bearer(tenantKey("team-a")) });
    expect(limited.status).toBe(429);
    const retryAfter = Number(limited.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60 / PER_MINUTE);
    expect((await json(limited)).error.code).toBe("RATE_LIMITED");
  });

  test("other tenant keeps its own bucket", async () => {
    const response = await fetch(`${url}/v1/jobs`, { headers: bearer(tenantKey("team-b")) });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
  });

  test("second API process shares the bucket through Redis", async () => {
    const queue = new JobQueue(harness.redis, {
      prefix: PREFIX,
      retry: RETRY,
      retention: harness.store.retention,
      logger: harness.logger,
    });
    const second = await buildApiApp({
      redis: harness.redis,
      keys: harness.keys,
      store: harness.store,
      queue,
      storage: harness.storage,
      limits: { maxUploadBytes: 1024 * 1024, heartbeatMs: 15_000 },
      apiKeys: [{ tenant: "team-a", admin: false, sha256: hashApiKey(tenantKey("team-a")) }],
      tenantLimits: { rateLimitPerMinute: PER_MINUTE, maxActiveJobs: 0, maxStoredBytes: 0 },
      logger: harness.logger,
    });
    try {
      const secondUrl = await second.listen({ port: 0, host: "127.0.0.1" });
      const response = await fetch(`${secondUrl}/v1/jobs`, {
        headers: bearer(tenantKey("team-a")),
      });
      expect(response.status).toBe(429);
      expect((await json(response)).error.code).toBe("RATE_LIMITED");
    } finally {
      await second.close();
      await queue.close();
    }
  });

  test("health routes are not rate limited", async () => {
    for (let i = 0; i < PER_MINUTE + 2; i++) {
      const response = await fetch(`${url}/livez`);
      expect(response.status).toBe(200);
      await response.arrayBuffer();
    }
  });
});

describe("active jobs", () => {
  let harness: Harness;
  let url: string;

  beforeAll(async () => {
    harness = await harnessFor(["team-a", "team-b"], {
      tenantLimits: { rateLimitPerMinute: 0, maxActiveJobs: 1, maxStoredBytes: 0 },
    });
    url = await harness.startApi();
  });

  afterAll(async () => {
    await harness.stop();
  });

  test("second queued job gets 429 TOO_MANY_ACTIVE_JOBS", async () => {
    const first = await upload(url, "team-a");
    expect(first.status).toBe(202);
    const firstId = (await json(first)).id as string;

    const second = await upload(url, "team-a");
    expect(second.status).toBe(429);
    expect(Number(second.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const body = await json(second);
    expect(body.error.code).toBe("TOO_MANY_ACTIVE_JOBS");
    expect(body.error.message).toContain("maximum is 1");

    const keys = (await harness.storage.list("")).map((object) => object.key);
    expect(keys.every((key) => key.startsWith(`jobs/${firstId}/`))).toBe(true);
  });

  test("other tenant is not counted", async () => {
    const response = await upload(url, "team-b");
    expect(response.status).toBe(202);
    await response.arrayBuffer();
  });

  test("cancelled job frees its slot", async () => {
    const list = await json(
      await fetch(`${url}/v1/jobs`, { headers: bearer(tenantKey("team-a")) }),
    );
    const id = list.jobs[0].id as string;
    const cancel = await fetch(`${url}/v1/jobs/${id}/cancel`, {
      method: "POST",
      headers: bearer(tenantKey("team-a")),
    });
    expect(cancel.status).toBe(200);
    await cancel.arrayBuffer();
    const next = await upload(url, "team-a");
    expect(next.status).toBe(202);
    await next.arrayBuffer();
  });
});

describe("storage quota", () => {
  /** Fits one fixture upload (about 1.05 MB of parts) but not two. */
  const QUOTA = 1_500_000;
  let harness: Harness;
  let url: string;

  beforeAll(async () => {
    harness = await harnessFor(["team-a", "team-b"], {
      tenantLimits: { rateLimitPerMinute: 0, maxActiveJobs: 0, maxStoredBytes: QUOTA },
    });
    url = await harness.startApi();
  });

  afterAll(async () => {
    await harness.stop();
  });

  async function storedKeys(): Promise<string[]> {
    return (await harness.storage.list("")).map((object) => object.key);
  }

  test("accepted upload counts against the quota", async () => {
    const parts = await fixtureParts();
    const response = await upload(url, "team-a");
    expect(response.status).toBe(202);
    await response.arrayBuffer();
    const uploaded = parts.reduce((sum, part) => sum + part.bytes.length, 0);
    expect(await harness.store.storedBytes("team-a")).toBe(uploaded);
    expect(await harness.store.storedBytes("team-b")).toBe(0);
  });

  test("declared Content-Length past the quota gets 429", async () => {
    const before = await storedKeys();
    const response = await upload(url, "team-a");
    expect(response.status).toBe(429);
    expect(Number(response.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const body = await json(response);
    expect(body.error.code).toBe("STORAGE_QUOTA_EXCEEDED");
    expect(await storedKeys()).toEqual(before);
  });

  test("chunked upload past the quota is stopped while streaming", async () => {
    const before = await storedKeys();
    const form = new FormData();
    form.append("options", JSON.stringify(PIFA_HALF));
    for (const part of await fixtureParts()) {
      form.append(part.part, new Blob([part.bytes]), part.filename);
    }
    // Re-sending the encoded form as a stream drops Content-Length, so only the running total
    // can catch it.
    const encoded = new Response(form);
    const response = await fetch(`${url}/v1/jobs`, {
      method: "POST",
      body: encoded.body,
      duplex: "half",
      headers: {
        ...bearer(tenantKey("team-a")),
        "content-type": encoded.headers.get("content-type") ?? "",
      },
    } as RequestInit);
    expect(response.status).toBe(429);
    expect((await json(response)).error.code).toBe("STORAGE_QUOTA_EXCEEDED");
    expect(await storedKeys()).toEqual(before);
  });

  test("published artifacts count against the quota", async () => {
    const list = await json(
      await fetch(`${url}/v1/jobs`, { headers: bearer(tenantKey("team-a")) }),
    );
    const id = list.jobs[0].id as string;
    const before = await harness.store.storedBytes("team-a");
    const artifact = Buffer.from('{"totals":{}}');
    const stored = await harness.storage.put(
      artifactKey(id, "report.json"),
      Readable.from([artifact]),
    );
    // The worker publishes artifacts through this transition when a job succeeds.
    await harness.store.transition(id, {
      from: ["queued"],
      to: "succeeded",
      fields: { artifacts: [{ name: "report.json", size: stored.size, sha256: stored.sha256 }] },
    });
    expect(await harness.store.storedBytes("team-a")).toBe(before + artifact.length);
  });

  test("deleting a job returns its bytes to the quota", async () => {
    const list = await json(
      await fetch(`${url}/v1/jobs`, { headers: bearer(tenantKey("team-a")) }),
    );
    for (const job of list.jobs as Array<{ id: string }>) {
      const response = await fetch(`${url}/v1/jobs/${job.id}`, {
        method: "DELETE",
        headers: bearer(tenantKey("team-a")),
      });
      expect(response.status).toBe(204);
    }
    expect(await harness.store.storedBytes("team-a")).toBe(0);
    const again = await upload(url, "team-a");
    expect(again.status).toBe(202);
    await again.arrayBuffer();
  });
});
