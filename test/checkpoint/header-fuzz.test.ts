import { readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { BufferByteSource } from "../../src/checkpoint/byte-source.ts";
import { isCheckpointError } from "../../src/checkpoint/errors.ts";
import { openSafetensors } from "../../src/checkpoint/safetensors.ts";
import { rng } from "../helpers/matrices.ts";

/** Wall-clock budget of each fuzz loop; the loops stop early, never late. */
const FUZZ_SECONDS = 3;
/** Any single parse above this is treated as a hang. */
const PARSE_LIMIT_MS = 500;

const FRAGMENTS = [
  '{"',
  '"}',
  "{",
  "}",
  "[",
  "]",
  ",",
  ":",
  '"dtype":"F32"',
  '"dtype":"BF16"',
  '"dtype":"Q4"',
  '"shape":[2,3]',
  '"shape":[-1]',
  '"shape":[1e30,1e30]',
  '"shape":[9007199254740993]',
  '"data_offsets":[0,24]',
  '"data_offsets":[24,0]',
  '"data_offsets":[0,18446744073709551616]',
  '"__metadata__":{"format":"pt"}',
  '"__metadata__":{"x":1}',
  '"__proto__":{}',
  '"a":{}',
  '"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}',
  "null",
  "1e999",
  "\\u0000",
  "\\ud800",
  '"\u0001"',
  "    ",
  "\u00ff",
];

type Outcome = "parsed" | string;

/** Opens `bytes` and returns "parsed" or the CheckpointError code; anything else fails the test. */
async function parse(bytes: Uint8Array): Promise<Outcome> {
  const started = performance.now();
  let outcome: Outcome;
  try {
    await openSafetensors(new BufferByteSource(Buffer.from(bytes)));
    outcome = "parsed";
  } catch (error) {
    if (!isCheckpointError(error)) {
      const input = Buffer.from(bytes).toString("hex").slice(0, 200);
      throw new Error(`non-checkpoint error for input ${input}`, { cause: error });
    }
    outcome = error.code;
  }
  const elapsed = performance.now() - started;
  if (elapsed > PARSE_LIMIT_MS) throw new Error(`parse took ${elapsed.toFixed(0)} ms`);
  return outcome;
}

function withLength(
  header: Uint8Array,
  data: Uint8Array,
  declared = BigInt(header.length),
): Uint8Array {
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(declared);
  return Buffer.concat([prefix, header, data]);
}

describe("safetensors header fuzzing", () => {
  it("random fragment headers only raise checkpoint errors", async () => {
    const random = rng(1234);
    const pick = (n: number) => Math.floor(random() * n);
    const outcomes = new Map<Outcome, number>();
    const deadline = performance.now() + FUZZ_SECONDS * 1000;
    let cases = 0;
    while (performance.now() < deadline) {
      const parts: string[] = [];
      const count = 1 + pick(12);
      for (let i = 0; i < count; i++) parts.push(FRAGMENTS[pick(FRAGMENTS.length)]);
      const header = Buffer.from(parts.join(""), "utf8");
      const data = Buffer.alloc(pick(64));
      // Sometimes lie about the header length.
      const declared = random() < 0.2 ? BigInt(pick(1 << 20)) : BigInt(header.length);
      const outcome = await parse(withLength(header, data, declared));
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      cases++;
    }
    expect(cases).toBeGreaterThan(100);
    // The generator reaches many distinct failure kinds, not one early exit.
    expect(outcomes.size).toBeGreaterThan(5);
  });

  it("byte mutations of the real fixture only raise checkpoint errors", async () => {
    const fixture = await readFile(path.resolve("test/fixtures/stories260K/model.safetensors"));
    const headerLength = Number(fixture.readBigUInt64LE(0));
    // Mutate the length prefix and the header; the data section is not parsed.
    const prefix = fixture.subarray(0, 8 + headerLength);
    const random = rng(99);
    const pick = (n: number) => Math.floor(random() * n);
    const deadline = performance.now() + FUZZ_SECONDS * 1000;
    const outcomes = new Map<Outcome, number>();
    let cases = 0;
    while (performance.now() < deadline) {
      const mutated = Buffer.from(prefix);
      const edits = 1 + pick(4);
      for (let e = 0; e < edits; e++) {
        const position = pick(mutated.length);
        const kind = pick(3);
        if (kind === 0) mutated[position] = pick(256);
        else if (kind === 1) mutated[position] ^= 1 << pick(8);
        else mutated[position] = '{}[]":,0123456789-e.'.charCodeAt(pick(20));
      }
      const cut = random() < 0.1 ? pick(mutated.length) : mutated.length;
      const bytes = Buffer.concat([mutated.subarray(0, cut), fixture.subarray(8 + headerLength)]);
      const outcome = await parse(bytes);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      cases++;
    }
    expect(cases).toBeGreaterThan(50);
    expect(outcomes.size).toBeGreaterThan(3);
  });

  it("huge declared sizes never allocate before validation", async () => {
    const before = process.memoryUsage().arrayBuffers;
    for (const declared of [2n ** 63n, 2n ** 40n, 10n ** 12n]) {
      const outcome = await parse(withLength(Buffer.from("{}"), Buffer.alloc(0), declared));
      expect(outcome).toBe("HEADER_TOO_LARGE");
    }
    const header = Buffer.from(
      '{"w":{"dtype":"F32","shape":[1000000000,1000000000],"data_offsets":[0,4]}}',
    );
    expect(await parse(withLength(header, Buffer.alloc(4)))).toBe("SHAPE_OVERFLOW");
    const large = Buffer.from('{"w":{"dtype":"F32","shape":[100000,100000],"data_offsets":[0,4]}}');
    expect(await parse(withLength(large, Buffer.alloc(4)))).toBe("SIZE_MISMATCH");
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });
});
