import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { json } from "./client.ts";
import { Harness } from "./harness.ts";

let harness: Harness;

beforeAll(async () => {
  harness = await Harness.start();
  await harness.startApi();
});

afterAll(async () => {
  await harness.stop();
});

async function post(contentType: string, body: string): Promise<Response> {
  return fetch(`${harness.url}/v1/jobs`, {
    method: "POST",
    headers: { "content-type": contentType },
    body,
  });
}

describe("malformed multipart bodies", () => {
  const cases: Array<[string, string, string]> = [
    ["no boundary", "multipart/form-data", "--X\r\n\r\n"],
    [
      "wrong boundary",
      "multipart/form-data; boundary=Other",
      '--XyZ\r\nContent-Disposition: form-data; name="options"\r\n\r\n{}\r\n--XyZ--\r\n',
    ],
    ["garbage body", "multipart/form-data; boundary=XyZ", "hello world, not multipart at all"],
    [
      "unterminated part",
      "multipart/form-data; boundary=XyZ",
      '--XyZ\r\nContent-Disposition: form-data; name="options"\r\n\r\n{"method":"pifa"',
    ],
  ];
  for (const [name, contentType, body] of cases) {
    it(`${name} gets 400, not 500`, async () => {
      const response = await post(contentType, body);
      expect(response.status).toBe(400);
      const payload = await json(response);
      expect(payload.error.code).toBe("INVALID_REQUEST");
      expect(payload.error.message).not.toContain("jobs/");
    });
  }

  it("service keeps serving afterwards", async () => {
    expect((await fetch(`${harness.url}/livez`)).status).toBe(200);
    expect(await harness.storage.list("jobs/")).toEqual([]);
  });
});
