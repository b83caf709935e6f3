/** The whole job path on S3 storage (s3rver on loopback): upload, compress, download, delete. */

import { afterAll, beforeAll, expect, test } from "vitest";
import { createStorage } from "../../src/storage/index.ts";
import { startS3, type TestS3 } from "../helpers/s3.ts";
import { fixtureParts, json, postUpload, sha256, waitForFinalStatus } from "./client.ts";
import { Harness } from "./harness.ts";

let s3: TestS3;
let harness: Harness;
let url: string;

beforeAll(async () => {
  s3 = await startS3();
  const storage = createStorage(`s3://${s3.bucket}/service`, { env: s3.env });
  harness = await Harness.start({ storage });
  url = await harness.startApi();
  harness.startWorker();
});

afterAll(async () => {
  await harness?.stop();
  await s3?.stop();
});

test("S3 job runs end to end", async () => {
  const response = await postUpload(url, {
    options: { method: "pifa", density: 0.5 },
    files: await fixtureParts(),
  });
  expect(response.status).toBe(202);
  const { id } = await json(response);
  expect((await waitForFinalStatus(url, id)).status).toBe("succeeded");

  const job = await json(await fetch(`${url}/v1/jobs/${id}`));
  expect(job.report.totals.density).toBeLessThanOrEqual(0.5);
  for (const artifact of job.artifacts as Array<{ name: string; size: number; sha256: string }>) {
    const download = await fetch(`${url}/v1/jobs/${id}/artifacts/${artifact.name}`);
    expect(download.status).toBe(200);
    const bytes = new Uint8Array(await download.arrayBuffer());
    expect(sha256(bytes)).toBe(artifact.sha256);
    const head = await harness.storage.head(`jobs/${id}/artifacts/${artifact.name}`);
    expect(head?.sha256).toBe(artifact.sha256);
  }
  const range = await fetch(`${url}/v1/jobs/${id}/artifacts/model.safetensors`, {
    headers: { range: "bytes=0-7" },
  });
  expect(range.status).toBe(206);
  expect((await range.arrayBuffer()).byteLength).toBe(8);

  expect((await fetch(`${url}/v1/jobs/${id}`, { method: "DELETE" })).status).toBe(204);
  expect(await harness.storage.list(`jobs/${id}/`)).toEqual([]);
});

test("rejected upload leaves nothing in the bucket", async () => {
  const parts = await fixtureParts();
  const response = await postUpload(url, {
    options: { method: "pifa", density: 0.5 },
    files: [{ ...parts[0], bytes: parts[0].bytes.subarray(0, 4) }, parts[1]],
  });
  expect(response.status).toBe(422);
  expect((await json(response)).error.code).toBe("HEADER_TRUNCATED");
  expect(await harness.storage.list("")).toEqual([]);
});
