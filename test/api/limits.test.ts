/** Upload size limit: the sum of all parts may not exceed the configured maximum. */

import { afterAll, beforeAll, expect, test } from "vitest";
import { fixtureParts, json, postUpload } from "./client.ts";
import { Harness } from "./harness.ts";

/** Below the fixture's 1,044,992-byte model.safetensors, above its config.json. */
const MAX_UPLOAD_BYTES = 500_000;

let harness: Harness;
let url: string;

beforeAll(async () => {
  harness = await Harness.start({ maxUploadBytes: MAX_UPLOAD_BYTES });
  url = await harness.startApi();
});

afterAll(async () => {
  await harness.stop();
});

test("oversized upload gives 413", async () => {
  const response = await postUpload(url, {
    options: { method: "pifa", density: 0.5 },
    files: await fixtureParts(),
  });
  expect(response.status).toBe(413);
  const body = await json(response);
  expect(body.error.code).toBe("UPLOAD_TOO_LARGE");
  expect(body.error.message).toContain(String(MAX_UPLOAD_BYTES));
  expect(body.error.message).toContain("PIFA_MAX_UPLOAD_BYTES");
  expect(body.error.message).not.toContain("jobs/");
  expect(body.error.field).toBe("checkpoint");
  expect(await harness.storage.list("")).toEqual([]);
});

test("limit counts all parts together", async () => {
  const parts = await fixtureParts();
  const half = {
    part: "checkpoint",
    filename: "a.safetensors",
    bytes: parts[0].bytes.subarray(0, 300_000),
  };
  const response = await postUpload(url, {
    options: { method: "pifa", density: 0.5 },
    files: [half, { ...half, filename: "b.safetensors" }, parts[1]],
  });
  expect(response.status).toBe(413);
  expect(await harness.storage.list("")).toEqual([]);
});

test("connection serves requests after a rejected upload", async () => {
  for (let i = 0; i < 3; i++) {
    const rejected = await postUpload(url, {
      options: { method: "pifa", density: 0.5 },
      files: await fixtureParts(),
    });
    expect(rejected.status).toBe(413);
    await rejected.arrayBuffer();
    const live = await fetch(`${url}/livez`);
    expect(live.status).toBe(200);
    await live.arrayBuffer();
  }
});
