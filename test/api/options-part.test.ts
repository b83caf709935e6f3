/**
 * The `options` part in each form a client can send it: a text field, an `application/json` field
 * (curl -F 'options=...;type=application/json') and a file part. @fastify/multipart parses an
 * `application/json` field before the route reads it, so that form takes its own code path.
 */

import { text } from "node:stream/consumers";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type FilePart, fixtureParts, json } from "./client.ts";
import { Harness } from "./harness.ts";

const PIFA_HALF = { method: "pifa", density: 0.5 };
const BOUNDARY = "pifa-options-part-3c9e";

/** One part of a hand-built multipart body, so the test controls each part's headers. */
interface RawPart {
  name: string;
  body: string | Uint8Array;
  filename?: string;
  contentType?: string;
}

let harness: Harness;
let url: string;
let fixture: FilePart[];

beforeAll(async () => {
  harness = await Harness.start();
  url = await harness.startApi();
  fixture = await fixtureParts();
});

afterAll(async () => {
  await harness.stop();
});

function multipartBody(parts: RawPart[]): Buffer {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    const filename = part.filename === undefined ? "" : `; filename="${part.filename}"`;
    const type = part.contentType === undefined ? "" : `Content-Type: ${part.contentType}\r\n`;
    chunks.push(
      Buffer.from(
        `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${part.name}"${filename}\r\n${type}\r\n`,
      ),
      Buffer.from(part.body),
      Buffer.from("\r\n"),
    );
  }
  chunks.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(chunks);
}

/** Returns the fixture's checkpoint and config as file parts. */
function fixtureFileParts(): RawPart[] {
  return fixture.map((file) => ({
    name: file.part,
    filename: file.filename,
    contentType: "application/octet-stream",
    body: file.bytes,
  }));
}

/** Posts the options part (in the given form) first, then the fixture's file parts. */
async function postWithOptions(options: Omit<RawPart, "name">): Promise<Response> {
  return postParts([{ name: "options", ...options }, ...fixtureFileParts()]);
}

async function postParts(parts: RawPart[]): Promise<Response> {
  return fetch(`${url}/v1/jobs`, {
    method: "POST",
    body: multipartBody(parts),
    headers: { "content-type": `multipart/form-data; boundary=${BOUNDARY}` },
  });
}

async function storedKeys(): Promise<string[]> {
  return (await harness.storage.list("")).map((object) => object.key);
}

describe("accepted options part forms", () => {
  test.each([
    ["text field", {}],
    ["application/json field", { contentType: "application/json" }],
    ["application/json field with charset", { contentType: "application/json; charset=utf-8" }],
    ["upper-case JSON field type", { contentType: "Application/JSON" }],
    ["text/plain field", { contentType: "text/plain" }],
    ["application/json file", { filename: "options.json", contentType: "application/json" }],
    ["octet-stream file", { filename: "options.json", contentType: "application/octet-stream" }],
  ])("%s gets 202 with its options", async (_name, form) => {
    const response = await postWithOptions({ ...form, body: JSON.stringify(PIFA_HALF) });
    const body = await json(response);

    expect(response.status, JSON.stringify(body)).toBe(202);
    expect(body.status).toBe("queued");
    expect(body.options.method).toBe("pifa");
    expect(body.options.density).toBe(0.5);
  });

  test("application/json field keeps every option", async () => {
    const options = { method: "svd", density: 0.25, rankMultiple: 8 };
    const response = await postWithOptions({
      contentType: "application/json",
      body: JSON.stringify(options),
    });
    const body = await json(response);

    expect(response.status, JSON.stringify(body)).toBe(202);
    expect(body.options.method).toBe("svd");
    expect(body.options.density).toBe(0.25);
    expect(body.options.rankMultiple).toBe(8);
  });

  test("config as application/json field gets 202", async () => {
    const [checkpoint, config] = fixture;
    const response = await postParts([
      { name: "options", contentType: "application/json", body: JSON.stringify(PIFA_HALF) },
      {
        name: "checkpoint",
        filename: checkpoint.filename,
        contentType: "application/octet-stream",
        body: checkpoint.bytes,
      },
      { name: "config", contentType: "application/json", body: config.bytes },
    ]);
    const body = await json(response);

    expect(response.status, JSON.stringify(body)).toBe(202);
    const stored = await text(await harness.storage.get(`jobs/${body.id}/inputs/config.json`));
    expect(JSON.parse(stored)).toEqual(JSON.parse(Buffer.from(config.bytes).toString("utf8")));
  });
});

describe("rejected application/json options field", () => {
  test.each([
    [{ method: "pifa", density: 2 }, "options.density", "density must be at most 1"],
    [{ method: "pifa", density: 0 }, "options.density", "density must be greater than 0"],
    [{ method: "zip", density: 0.5 }, "options.method", "method must be one of"],
    [{ method: "pifa" }, "options.density", "density is missing"],
    [{ method: "pifa", density: 0.5, colour: "red" }, "options", 'unknown option "colour"'],
    [[1, 2], "options", ""],
    ['{"method":"pifa","density":0.5}', "options", ""],
    [null, "options", ""],
  ])("%j gets 400 INVALID_OPTIONS naming %s", async (options, field, message) => {
    const before = await storedKeys();
    const response = await postWithOptions({
      contentType: "application/json",
      body: JSON.stringify(options),
    });
    const body = await json(response);

    expect(response.status).toBe(400);
    expect(body.error.code).toBe("INVALID_OPTIONS");
    expect(body.error.field).toBe(field);
    expect(body.error.message).toContain(message);
    expect(body.error.message).not.toContain("[object Object]");
    expect(await storedKeys()).toEqual(before);
  });

  test.each([
    ["invalid JSON", '{"method":"pifa",'],
    ["a __proto__ key", '{"method":"pifa","density":0.5,"__proto__":{"x":1}}'],
    ["more than 64 KiB", JSON.stringify({ ...PIFA_HALF, padding: "x".repeat(70 * 1024) })],
  ])("field with %s gets 400 INVALID_REQUEST", async (_name, optionsText) => {
    const before = await storedKeys();
    const response = await postWithOptions({ contentType: "application/json", body: optionsText });
    const body = await json(response);

    expect(response.status).toBe(400);
    expect(body.error.code).toBe("INVALID_REQUEST");
    expect(body.error.message).toContain("sent as application/json is not valid JSON");
    expect(await storedKeys()).toEqual(before);
  });

  test("text field over 64 KiB still gets INVALID_OPTIONS", async () => {
    const before = await storedKeys();
    const optionsText = JSON.stringify({ ...PIFA_HALF, padding: "x".repeat(70 * 1024) });
    const response = await postWithOptions({ body: optionsText });
    const body = await json(response);

    expect(response.status).toBe(400);
    expect(body.error.code).toBe("INVALID_OPTIONS");
    expect(body.error.field).toBe("options");
    expect(body.error.message).toContain("exceeds 65536 bytes");
    expect(await storedKeys()).toEqual(before);
  });
});
