/**
 * Invalid options (every field), broken config.json and out-of-range token ids uploaded over HTTP:
 * each is rejected with its 4xx code and the field named, nothing stays in storage, and the
 * service keeps serving.
 */

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { type FilePart, fixtureParts, json, postUpload } from "../api/client.ts";
import { Harness } from "../api/harness.ts";
import { expectError, expectLive, listFiles } from "./helpers.ts";

const PIFA = { method: "pifa", density: 0.5 };

let harness: Harness;
let url: string;
let weights: FilePart;
let config: FilePart;
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

describe("invalid options", () => {
  test.each([
    [{ method: "pifa", density: "half" }, "options.density"],
    [{ method: "pifa", density: -0.5 }, "options.density"],
    [{ method: "pifa", density: Number.MAX_VALUE }, "options.density"],
    [{ method: 7, density: 0.5 }, "options.method"],
    [{ density: 0.5 }, "options.method"],
    [{ ...PIFA, rankMultiple: 0 }, "options.rankMultiple"],
    [{ ...PIFA, rankMultiple: 2048 }, "options.rankMultiple"],
    [{ ...PIFA, targets: "*.q_proj.*" }, "options.targets"],
    [{ ...PIFA, targets: Array.from({ length: 65 }, () => "*") }, "options.targets"],
    [{ ...PIFA, exclude: [42] }, "options.exclude.0"],
    [{ ...PIFA, dtype: "f8" }, "options.dtype"],
    [{ ...PIFA, shardBytes: 1024 }, "options.shardBytes"],
    [{ ...PIFA, shardBytes: 1.5e6 + 0.5 }, "options.shardBytes"],
    [{ ...PIFA, lambda: 2 }, "options.lambda"],
    [{ ...PIFA, steps: 0 }, "options.steps"],
    [{ ...PIFA, steps: 21 }, "options.steps"],
    [{ ...PIFA, ridge: 0 }, "options.ridge"],
    [{ ...PIFA, calibrationSequences: 0 }, "options.calibrationSequences"],
    [{ ...PIFA, sequenceLength: 1 }, "options.sequenceLength"],
    [null, "options"],
    ["", "options"],
  ])("options %j give 400 naming %s", async (options, field) => {
    const response = await postUpload(url, {
      options: options === "" ? "" : JSON.stringify(options),
      files: [weights, config],
    });
    await expectError(response, 400, "INVALID_OPTIONS", field);
  });
});

describe("option messages", () => {
  test.each([
    [{ method: "pifa" }, "density is missing"],
    [{ ...PIFA, steps: 1.5 }, "steps must be an integer from 1 to 20"],
    [{ ...PIFA, ridge: -1 }, "ridge must be greater than 0"],
    [{ ...PIFA, lambda: "a" }, "lambda must be a number from 0 to 1"],
    [{ ...PIFA, dtype: "f64" }, "dtype must be one of same, f32, f16, bf16"],
    [[1], "options must be a JSON object"],
  ])("options %j say %s", async (options, text) => {
    const response = await postUpload(url, {
      options: JSON.stringify(options),
      files: [weights, config],
    });
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.error.code).toBe("INVALID_OPTIONS");
    expect(body.error.message).toContain(text);
  });
});

describe("broken config.json", () => {
  test.each([
    ["not JSON", Buffer.from("{")],
    ["JSON array", Buffer.from("[]")],
    ["string hidden_size", Buffer.from('{"hidden_size": "288", "num_hidden_layers": 5}')],
    ["zero layers", Buffer.from('{"hidden_size": 288, "num_hidden_layers": 0}')],
    ["not UTF-8", Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
  ])("config %s gives 422", async (_case, bytes) => {
    const response = await postUpload(url, {
      options: PIFA,
      files: [weights, { part: "config", filename: "config.json", bytes }],
    });
    await expectError(response, 422, "INVALID_CONFIG");
  });
});

describe("invalid token ids", () => {
  const evaluation = (text: string): FilePart => ({
    part: "evaluation",
    filename: "evaluation.json",
    bytes: Buffer.from(text),
  });

  test.each([
    ['{"sequences": [[1, 512]]}', "evaluation.sequences[0][1]"],
    ['{"sequences": [[1, -1]]}', "evaluation.sequences[0][1]"],
    ['{"sequences": [[1, 2.5]]}', "evaluation.sequences[0][1]"],
    ['{"sequences": [[3, 4], [1, 99999999999]]}', "evaluation.sequences[1][1]"],
    ['{"sequences": []}', "evaluation.sequences"],
  ])("evaluation %s gives 422 naming %s", async (text, field) => {
    const response = await postUpload(url, {
      options: PIFA,
      files: [weights, config, evaluation(text)],
    });
    await expectError(response, 422, "INVALID_TOKENS", field);
  });
});
