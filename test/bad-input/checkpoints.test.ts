/**
 * Malformed safetensors files and shard indexes uploaded over HTTP: each is rejected with its 4xx
 * code, nothing stays in storage, and the service keeps serving.
 */

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { type FilePart, fixtureParts, json, postUpload } from "../api/client.ts";
import { Harness } from "../api/harness.ts";
import { expectError, expectLive, listFiles, safetensors } from "./helpers.ts";

const OPTIONS = { method: "pifa", density: 0.5 };

let harness: Harness;
let url: string;
let config: FilePart;
let weights: FilePart;
let storageBefore: string[];

beforeAll(async () => {
  harness = await Harness.start();
  url = await harness.startApi();
  [weights, config] = await fixtureParts();
});

afterAll(async () => {
  await harness.stop();
});

beforeEach(async () => {
  storageBefore = await listFiles(harness.storageRoot ?? "");
});

afterEach(async () => {
  expect(await listFiles(harness.storageRoot ?? "")).toEqual(storageBefore);
  await expectLive(url);
});

function checkpointPart(bytes: Buffer, filename = "model.safetensors"): FilePart {
  return { part: "checkpoint", filename, bytes };
}

const F32_2 = '"dtype":"F32","shape":[2]';

describe("malformed safetensors", () => {
  test.each([
    ["HEADER_TRUNCATED", Buffer.from([1, 2, 3])],
    ["HEADER_TOO_LARGE", safetensors("{}").fill(0xff, 0, 8)],
    ["HEADER_NOT_UTF8", safetensors("{}").fill(0xff, 8, 10)],
    ["HEADER_NOT_JSON", safetensors("{not json")],
    ["HEADER_NOT_OBJECT", safetensors("[1, 2]")],
    [
      "DUPLICATE_KEY",
      safetensors(
        `{"a":{${F32_2},"data_offsets":[0,8]},"a":{${F32_2},"data_offsets":[0,8]}}`,
        Buffer.alloc(8),
      ),
    ],
    ["UNSAFE_NAME", safetensors(`{"__proto__":{${F32_2},"data_offsets":[0,8]}}`, Buffer.alloc(8))],
    ["INVALID_NAME", safetensors(`{"a\\u0001":{${F32_2},"data_offsets":[0,8]}}`, Buffer.alloc(8))],
    [
      "UNKNOWN_DTYPE",
      safetensors('{"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}', Buffer.alloc(8)),
    ],
    [
      "INVALID_SHAPE",
      safetensors('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', Buffer.alloc(8)),
    ],
    ["SIZE_MISMATCH", safetensors(`{"a":{${F32_2},"data_offsets":[0,4]}}`, Buffer.alloc(4))],
    [
      "OVERLAPPING_TENSORS",
      safetensors(
        `{"a":{${F32_2},"data_offsets":[0,8]},"b":{${F32_2},"data_offsets":[4,12]}}`,
        Buffer.alloc(12),
      ),
    ],
    ["TRAILING_BYTES", safetensors(`{"a":{${F32_2},"data_offsets":[0,8]}}`, Buffer.alloc(12))],
    [
      "INVALID_METADATA",
      safetensors(
        `{"__metadata__":{"format":1},"a":{${F32_2},"data_offsets":[0,8]}}`,
        Buffer.alloc(8),
      ),
    ],
  ])("%s gives 422", async (code, bytes) => {
    const response = await postUpload(url, {
      options: OPTIONS,
      files: [checkpointPart(bytes), config],
    });
    await expectError(response, 422, code);
  });

  test("data cut short gives 422", async () => {
    const response = await postUpload(url, {
      options: OPTIONS,
      files: [
        checkpointPart(Buffer.from(weights.bytes).subarray(0, weights.bytes.byteLength - 100)),
        config,
      ],
    });
    const body = await json(response);
    expect(response.status).toBe(422);
    expect(["DATA_TRUNCATED", "OFFSETS_OUT_OF_BOUNDS"]).toContain(body.error.code);
  });
});

describe("malformed shard index", () => {
  const shard = (filename: string) => checkpointPart(Buffer.from(weights.bytes), filename);
  const index = (weightMap: Record<string, string>): FilePart => ({
    part: "index",
    filename: "model.safetensors.index.json",
    bytes: Buffer.from(JSON.stringify({ metadata: {}, weight_map: weightMap })),
  });

  test("index naming an unsafe shard gives 422", async () => {
    const response = await postUpload(url, {
      options: OPTIONS,
      files: [
        shard("model-00001.safetensors"),
        index({ "model.norm.weight": "../evil.safetensors" }),
        config,
      ],
    });
    await expectError(response, 422, "UNSAFE_SHARD_NAME");
  });

  test("index naming a missing shard gives 422", async () => {
    const response = await postUpload(url, {
      options: OPTIONS,
      files: [
        shard("model-00001.safetensors"),
        index({ "model.norm.weight": "model-00002.safetensors" }),
        config,
      ],
    });
    await expectError(response, 422, "MISSING_SHARD");
  });

  test("index that is not JSON gives 422", async () => {
    const response = await postUpload(url, {
      options: OPTIONS,
      files: [
        shard("model-00001.safetensors"),
        {
          part: "index",
          filename: "model.safetensors.index.json",
          bytes: Buffer.from("{weight_map"),
        },
        config,
      ],
    });
    await expectError(response, 422, "INVALID_INDEX");
  });

  test("two shards with one name give 422", async () => {
    const response = await postUpload(url, {
      options: OPTIONS,
      files: [
        shard("model-00001.safetensors"),
        shard("model-00001.safetensors"),
        index({ "model.norm.weight": "model-00001.safetensors" }),
        config,
      ],
    });
    await expectError(response, 422, "DUPLICATE_SHARD");
  });
});
