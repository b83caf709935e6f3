/** The API's `/metrics` counts uploaded bytes of accepted submissions and artifact bytes served. */

import { afterAll, beforeAll, expect, test } from "vitest";
import { fixtureParts, json, postUpload, waitForFinalStatus } from "../api/client.ts";
import { Harness } from "../api/harness.ts";

let harness: Harness;

beforeAll(async () => {
  harness = await Harness.start();
  await harness.startApi();
  harness.startWorker();
});

afterAll(async () => {
  await harness.stop();
});

/** Value of an unlabelled counter in the Prometheus text format, or undefined when missing. */
function counterValue(metrics: string, name: string): number | undefined {
  const match = metrics.match(new RegExp(`^${name} ([0-9.e+]+)$`, "m"));
  return match === null ? undefined : Number(match[1]);
}

test("metrics count transferred bytes", { timeout: 60_000 }, async () => {
  const before = await (await fetch(`${harness.url}/metrics`)).text();
  expect(counterValue(before, "pifa_upload_bytes_total")).toBe(0);
  expect(counterValue(before, "pifa_artifact_bytes_served_total")).toBe(0);

  // A byte body gets a Content-Length header, which the counter reads.
  const form = new FormData();
  form.append("options", JSON.stringify({ method: "svd", density: 0.5 }));
  for (const file of await fixtureParts()) {
    form.append(file.part, new Blob([file.bytes]), file.filename);
  }
  const body = new Response(form);
  const bytes = new Uint8Array(await body.arrayBuffer());
  const response = await fetch(`${harness.url}/v1/jobs`, {
    method: "POST",
    body: bytes,
    headers: { "content-type": body.headers.get("content-type") ?? "" },
  });
  expect(response.status).toBe(202);
  const { id } = await json(response);
  expect((await waitForFinalStatus(harness.url, id)).status).toBe("succeeded");

  const full = await fetch(`${harness.url}/v1/jobs/${id}/artifacts/model.safetensors`);
  const fullBytes = (await full.arrayBuffer()).byteLength;
  const partial = await fetch(`${harness.url}/v1/jobs/${id}/artifacts/model.safetensors`, {
    headers: { range: "bytes=0-99" },
  });
  expect(partial.status).toBe(206);
  expect((await partial.arrayBuffer()).byteLength).toBe(100);
  // A rejected submission adds nothing.
  const rejected = await postUpload(harness.url, { options: "{", files: await fixtureParts() });
  expect(rejected.status).toBe(400);
  await rejected.arrayBuffer();

  const after = await (await fetch(`${harness.url}/metrics`)).text();
  expect(counterValue(after, "pifa_upload_bytes_total")).toBe(bytes.byteLength);
  expect(counterValue(after, "pifa_artifact_bytes_served_total")).toBe(fullBytes + 100);
});
