/**
 * Multipart uploads cut in the middle of the checkpoint part, sent as raw HTTP over a socket: the
 * server rejects or drops them, removes the partial upload, and keeps serving.
 */

import { connect } from "node:net";
import { afterAll, beforeAll, beforeEach, expect, test } from "vitest";
import { fixtureParts } from "../api/client.ts";
import { Harness } from "../api/harness.ts";
import { expectLive, listFiles } from "./helpers.ts";

const BOUNDARY = "----pifa-truncated-upload";
const CLEANUP_TIMEOUT_MS = 10_000;

let harness: Harness;
let url: string;
let checkpoint: Buffer;
let storageBefore: string[];

beforeAll(async () => {
  harness = await Harness.start();
  url = await harness.startApi();
  checkpoint = Buffer.from((await fixtureParts())[0].bytes);
});

afterAll(async () => {
  await harness.stop();
});

beforeEach(async () => {
  storageBefore = await listFiles(harness.storageRoot ?? "");
});

/** Builds the options part and the start of a checkpoint part, cut after `keep` bytes of weights. */
function truncatedBody(keep: number): Buffer {
  return Buffer.concat([
    Buffer.from(
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="options"\r\n\r\n` +
        `{"method":"pifa","density":0.5}\r\n` +
        `--${BOUNDARY}\r\nContent-Disposition: form-data; name="checkpoint"; filename="model.safetensors"\r\n` +
        "Content-Type: application/octet-stream\r\n\r\n",
    ),
    checkpoint.subarray(0, keep),
  ]);
}

/**
 * Sends `head` and `body` over a new socket on the API's port and returns whatever the server
 * writes back before the connection closes. With `endEarly` the client half-closes right after the
 * body, before the declared length arrived.
 */
function sendRaw(head: string, body: Buffer, endEarly: boolean): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1");
    const chunks: Buffer[] = [];
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
    socket.write(head);
    socket.write(body);
    if (endEarly) socket.end();
  });
}

/** Waits until the storage tree is back to what it was before the test, or the timeout passes. */
async function waitForStorageCleanup(): Promise<string[]> {
  const deadline = Date.now() + CLEANUP_TIMEOUT_MS;
  let files = await listFiles(harness.storageRoot ?? "");
  while (JSON.stringify(files) !== JSON.stringify(storageBefore) && Date.now() < deadline) {
    await new Promise((wake) => setTimeout(wake, 50));
    files = await listFiles(harness.storageRoot ?? "");
  }
  return files;
}

test("body shorter than Content-Length leaves nothing", async () => {
  const body = truncatedBody(checkpoint.byteLength / 2);
  const head =
    "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
    `Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\n` +
    `Content-Length: ${body.byteLength + checkpoint.byteLength}\r\nConnection: close\r\n\r\n`;
  const reply = await sendRaw(head, body, true);
  // The client is gone, so the server may write a 400 or nothing at all, but never a success.
  expect(reply).not.toMatch(/^HTTP\/1\.1 2/);
  expect(await waitForStorageCleanup()).toEqual(storageBefore);
  await expectLive(url);
});

test("chunked body ending mid-part gives 400", async () => {
  const body = truncatedBody(checkpoint.byteLength / 2);
  const chunked = Buffer.concat([
    Buffer.from(`${body.byteLength.toString(16)}\r\n`),
    body,
    Buffer.from("\r\n0\r\n\r\n"),
  ]);
  const head =
    "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
    `Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\n` +
    "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  const reply = await sendRaw(head, chunked, false);
  const status = /^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1];
  expect(status).toBe("400");
  const rejection = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4));
  expect(rejection.error.code).toBe("INVALID_REQUEST");
  expect(rejection.error.message).toContain("multipart");
  expect(await waitForStorageCleanup()).toEqual(storageBefore);
  await expectLive(url);
});
