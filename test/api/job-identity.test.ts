/** Job ids and the request fingerprint behind Idempotency-Key. */

import { describe, expect, test } from "vitest";
import { parseCompressionOptions } from "../../src/compression/options.ts";
import { requestFingerprint } from "../../src/jobs/fingerprint.ts";
import { isJobId, newJobId } from "../../src/jobs/ids.ts";
import type { JobInputs } from "../../src/jobs/model.ts";

describe("job ids", () => {
  test("ids are UUID version 7", () => {
    const id = newJobId();
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(isJobId(id)).toBe(true);
  });

  test("ids sort by creation time", () => {
    const ids = [3, 1_000, 1_700_000_000_000, 1_700_000_000_001].map((ms) => newJobId(ms));
    expect([...ids].sort()).toEqual(ids);
    expect(ids[0].slice(0, 13)).toBe("00000000-0003");
  });

  test.each([
    ["not-an-id"],
    ["0190D0A0-0000-7000-8000-000000000000"],
    ["0190d0a0-0000-4000-8000-000000000000"],
    [""],
  ])("%j is not a job id", (value) => {
    expect(isJobId(value)).toBe(false);
  });
});

describe("request fingerprint", () => {
  const parsed = parseCompressionOptions({ method: "pifa", density: 0.5 });
  if (!parsed.ok) throw new Error("fixture options are invalid");
  const options = parsed.options;
  const inputs: JobInputs = {
    checkpoint: [
      {
        name: "a.safetensors",
        key: "jobs/1/inputs/checkpoint-0.safetensors",
        size: 10,
        sha256: "aa",
      },
      {
        name: "b.safetensors",
        key: "jobs/1/inputs/checkpoint-1.safetensors",
        size: 20,
        sha256: "bb",
      },
    ],
    config: { name: "config.json", key: "jobs/1/inputs/config.json", size: 5, sha256: "cc" },
  };

  test("storage keys and part order do not matter", () => {
    const other: JobInputs = {
      checkpoint: [
        { ...inputs.checkpoint[1], key: "jobs/2/inputs/checkpoint-0.safetensors" },
        { ...inputs.checkpoint[0], key: "jobs/2/inputs/checkpoint-1.safetensors" },
      ],
      config: { ...inputs.config, key: "jobs/2/inputs/config.json" },
    };
    expect(requestFingerprint(options, other)).toBe(requestFingerprint(options, inputs));
  });

  test("defaults written out match defaults left out", () => {
    const explicit = parseCompressionOptions({
      method: "pifa",
      density: 0.5,
      dtype: "same",
      steps: 2,
    });
    if (!explicit.ok) throw new Error("explicit options are invalid");
    expect(requestFingerprint(explicit.options, inputs)).toBe(requestFingerprint(options, inputs));
  });

  test.each([
    ["content", { ...inputs, config: { ...inputs.config, sha256: "dd" } }],
    ["size", { ...inputs, config: { ...inputs.config, size: 6 } }],
    [
      "shard name",
      {
        ...inputs,
        checkpoint: [{ ...inputs.checkpoint[0], name: "c.safetensors" }, inputs.checkpoint[1]],
      },
    ],
    [
      "calibration part",
      { ...inputs, calibration: { ...inputs.config, name: "calibration.json" } },
    ],
  ])("other %s changes it", (_, changed) => {
    expect(requestFingerprint(options, changed as JobInputs)).not.toBe(
      requestFingerprint(options, inputs),
    );
  });

  test("other options change it", () => {
    const denser = parseCompressionOptions({ method: "pifa", density: 0.6 });
    if (!denser.ok) throw new Error("denser options are invalid");
    expect(requestFingerprint(denser.options, inputs)).not.toBe(
      requestFingerprint(options, inputs),
    );
  });
});
