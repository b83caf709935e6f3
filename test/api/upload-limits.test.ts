/**
 * Upload limits checked while the body streams: the part count and the idle timeout. Also checks
 * that storage keys never come from client file names and that artifact URLs reach only the
 * job's own artifacts.
 */

import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { type FilePart, fixtureParts, json, postUpload } from "./client.ts";
import { Harness } from "./harness.ts";

const MAX_PARTS = 4;
const IDLE_SECONDS = 1;
const PIFA_HALF = { method: "pifa", density: 0.5 };

let harness: Harness;
let url: string;
let port: number;

beforeAll(async () => {
  harness = await Harness.start({ maxUploadParts: MAX_PARTS, uploadIdleSeconds: IDLE_SECONDS });
  url = await harness.startApi();
  port = Number(new URL(url).port);
});

afterAll(async () => {
  await harness.stop();
});

async function storedKeys(): Promise<string[]> {
  return (await harness.storage.list("")).map((object) => object.key);
}

/** Waits until a background cleanup has emptied storage, checking every 50 ms for `maxMs`. */
async function waitForEmptyStorage(maxMs: number): Promise<string[]> {
  const deadline = Date.now() + maxMs;
  let keys = await storedKeys();
  while (keys.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    keys = await storedKeys();
  }
  return keys;
}

/** Multipart body bytes with raw file names, so names with NUL or slashes reach the server as is. */
function multipartBody(boundary: string, options: unknown, files: FilePart[]): Buffer {
  const chunks: Buffer[] = [
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="options"\r\n\r\n${JSON.stringify(options)}\r\n`,
    ),
  ];
  for (const file of files) {
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${file.part}"; filename="${file.filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
        "latin1",
      ),
      Buffer.from(file.bytes),
      Buffer.from("\r\n"),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

async function postRaw(files: FilePart[]): Promise<Response> {
  const boundary = "pifa-test-boundary-7f3a";
  return fetch(`${url}/v1/jobs`, {
    method: "POST",
    body: multipartBody(boundary, PIFA_HALF, files),
    headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
  });
}

describe("part count", () => {
  test("upload past the part limit gets 413 TOO_MANY_PARTS", async () => {
    const [checkpoint, config] = await fixtureParts();
    const small = { ...checkpoint, bytes: checkpoint.bytes.subarray(0, 1000) };
    const files = [
      config,
      ...Array.from({ length: MAX_PARTS }, (_, i) => ({
        ...small,
        filename: `shard-${i}.safetensors`,
      })),
    ];
    const response = await postUpload(url, { options: PIFA_HALF, files });
    expect(response.status).toBe(413);
    const body = await json(response);
    expect(body.error.code).toBe("TOO_MANY_PARTS");
    expect(body.error.message).toContain("PIFA_MAX_UPLOAD_PARTS");
    expect(await waitForEmptyStorage(5000)).toEqual([]);
  });

  test("upload within the part limit is accepted", async () => {
    const response = await postUpload(url, { options: PIFA_HALF, files: await fixtureParts() });
    expect(response.status).toBe(202);
    const id = (await json(response)).id as string;
    const deleted = await fetch(`${url}/v1/jobs/${id}`, { method: "DELETE" });
    expect(deleted.status).toBe(204);
  });
});

describe("idle upload", () => {
  test("stalled upload is closed and leaves nothing in storage", async () => {
    const [checkpoint] = await fixtureParts();
    const boundary = "pifa-idle-boundary";
    const head = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="options"\r\n\r\n${JSON.stringify(PIFA_HALF)}\r\n` +
          `--${boundary}\r\nContent-Disposition: form-data; name="checkpoint"; filename="model.safetensors"\r\n` +
          "Content-Type: application/octet-stream\r\n\r\n",
      ),
      checkpoint.bytes.subarray(0, 200_000),
    ]);
    const socket = connect(port, "127.0.0.1");
    const closed = new Promise<string>((resolve) => {
      let received = "";
      socket.on("data", (chunk) => {
        received += chunk.toString("latin1");
      });
      socket.on("close", () => resolve(received));
      socket.on("error", () => {});
    });
    socket.write(
      `POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        `Content-Type: multipart/form-data; boundary=${boundary}\r\n` +
        `Content-Length: ${head.length + 10_000_000}\r\n\r\n`,
    );
    socket.write(head);
    // The client now sends nothing more; the server has to close the connection on its own.
    const received = await closed;
    expect(received).not.toContain("202 Accepted");
    expect(await waitForEmptyStorage(5000)).toEqual([]);
    const live = await fetch(`${url}/livez`);
    expect(live.status).toBe(200);
  }, 15_000);
});

describe("idle JSON body", () => {
  test("stalled JSON body is closed", async () => {
    const socket = connect(port, "127.0.0.1");
    const closed = new Promise<string>((resolve) => {
      let received = "";
      socket.on("data", (chunk) => {
        received += chunk.toString("latin1");
      });
      socket.on("close", () => resolve(received));
      socket.on("error", () => {});
    });
    socket.write(
      `POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" +
        '{"source": "models/',
    );
    const received = await closed;
    expect(received).not.toContain("202 Accepted");
    expect(await harness.store.list({ limit: 10 })).toEqual({ jobs: [], hasMore: false });
  }, 15_000);
});

describe("storage keys", () => {
  beforeEach(async () => {
    const list = await json(await fetch(`${url}/v1/jobs`));
    for (const job of list.jobs as Array<{ id: string }>) {
      await (await fetch(`${url}/v1/jobs/${job.id}`, { method: "DELETE" })).arrayBuffer();
    }
  });

  // The multipart parser keeps only the last path component of a file name, so these arrive as
  // "passwd", "b" and "abs.safetensors". The storage key is generated either way.
  const pathNames = ["../../etc/passwd", "a/b", "/abs.safetensors", "..\\..\\win.safetensors"];

  test.each(pathNames)("checkpoint named %j is stored under a generated key", async (filename) => {
    const [checkpoint, config] = await fixtureParts();
    const response = await postRaw([{ ...checkpoint, filename }, config]);
    expect(response.status).toBe(202);
    const id = (await json(response)).id as string;
    expect((await storedKeys()).sort()).toEqual([
      `jobs/${id}/inputs/checkpoint-0.safetensors`,
      `jobs/${id}/inputs/config.json`,
    ]);
    const root = harness.storageRoot ?? "";
    // `.pifa` contains local storage's own temporary files.
    expect((await readdir(root)).filter((entry) => entry !== ".pifa")).toEqual(["jobs"]);
    const record = await harness.store.get(id);
    expect(record?.inputs.checkpoint.map((input) => input.name)).toEqual(["model.safetensors"]);
  });

  const invalidNames = ["x\u0000y.safetensors", ".."];

  test.each(invalidNames)("checkpoint named %j is rejected", async (filename) => {
    const [checkpoint, config] = await fixtureParts();
    const response = await postRaw([{ ...checkpoint, filename }, config]);
    expect(response.status).toBe(422);
    const body = await json(response);
    expect(body.error.code).toBe("UNSAFE_SHARD_NAME");
    expect(await waitForEmptyStorage(5000)).toEqual([]);
  });

  test("single-file parts ignore their client file names", async () => {
    const [checkpoint, config] = await fixtureParts();
    const response = await postRaw([checkpoint, { ...config, filename: "../../../etc/passwd" }]);
    expect(response.status).toBe(202);
    const id = (await json(response)).id as string;
    const keys = await storedKeys();
    expect(keys.sort()).toEqual([
      `jobs/${id}/inputs/checkpoint-0.safetensors`,
      `jobs/${id}/inputs/config.json`,
    ]);
    const root = harness.storageRoot ?? "";
    // `.pifa` contains local storage's own temporary files.
    expect((await readdir(root)).filter((entry) => entry !== ".pifa")).toEqual(["jobs"]);
    expect(existsSync(join(root, "..", "..", "..", "etc", "passwd.partial"))).toBe(false);
  });

  test("artifact URLs reach only the job's own artifacts", async () => {
    const job = await json(
      await postUpload(url, { options: PIFA_HALF, files: await fixtureParts() }),
    );
    const names = ["config.json", "..%2Finputs%2Fconfig.json", "..%2F..%2F..%2Fetc%2Fpasswd"];
    for (const name of names) {
      const response = await fetch(`${url}/v1/jobs/${job.id}/artifacts/${name}`);
      expect(response.status, name).toBe(404);
      expect((await json(response)).error.code, name).toBe("ARTIFACT_NOT_FOUND");
    }
  });
});
