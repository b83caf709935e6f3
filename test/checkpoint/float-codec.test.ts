import { describe, expect, it } from "vitest";
import {
  bf16BytesToFloat32,
  decodeFloat32,
  encodeFloat32,
  f16BytesToFloat32,
  float32ToBf16Bytes,
  float32ToF16Bytes,
} from "../../src/checkpoint/float-codec.ts";
import { expectCheckpointError } from "./helpers.ts";

function allPatterns(): Buffer {
  const bits = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) bits[i] = i;
  return Buffer.from(bits.buffer);
}

function bitsOf(bytes: Buffer): Uint16Array {
  return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
}

function f32FromBits(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0];
}

/** Deterministic xorshift32 stream, so failures reproduce. */
function* randomBits(seed: number, count: number): Generator<number> {
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    yield state;
  }
}

const half = (values: number[]) => Array.from(bitsOf(float32ToF16Bytes(new Float32Array(values))));
const bfloat = (values: number[]) =>
  Array.from(bitsOf(float32ToBf16Bytes(new Float32Array(values))));

describe("F16 conversion", () => {
  it("round-trips every non-NaN bit pattern", () => {
    const decoded = f16BytesToFloat32(allPatterns());
    const encoded = bitsOf(float32ToF16Bytes(decoded));
    for (let h = 0; h < 65536; h++) {
      const isNanPattern = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNanPattern) {
        expect(Number.isNaN(decoded[h]), `pattern ${h.toString(16)}`).toBe(true);
        expect(encoded[h] & 0x7e00, `pattern ${h.toString(16)} stays a quiet NaN`).toBe(0x7e00);
      } else if (encoded[h] !== h) {
        expect.fail(`F16 pattern 0x${h.toString(16)} came back as 0x${encoded[h].toString(16)}`);
      }
    }
  });

  it("rounds ties to even", () => {
    expect(half([1 + 2 ** -11])).toEqual([0x3c00]);
    expect(half([1 + 3 * 2 ** -11])).toEqual([0x3c02]);
    expect(half([1 + 2 ** -11 + 2 ** -20])).toEqual([0x3c01]);
    expect(half([2 ** -25])).toEqual([0x0000]);
    expect(half([3 * 2 ** -25])).toEqual([0x0002]);
    expect(half([-(2 ** -25) * 1.5])).toEqual([0x8001]);
  });

  it("overflows past the rounding midpoint", () => {
    expect(half([65504, 65519, 65520, -65520, 1e10])).toEqual([
      0x7bff, 0x7bff, 0x7c00, 0xfc00, 0x7c00,
    ]);
  });

  it("rounds subnormals up to normal", () => {
    // The largest subnormal plus more than half an ulp becomes the smallest normal 2^-14.
    expect(half([2 ** -14 - 2 ** -26])).toEqual([0x0400]);
    expect(half([2 ** -14 - 2 ** -24])).toEqual([0x03ff]);
  });

  it("picks nearest value for random floats", () => {
    const table = f16BytesToFloat32(allPatterns());
    const inputs: number[] = [];
    for (const bits of randomBits(12345, 20000)) {
      // Random sign and mantissa, exponents spread over the F16 range and below it.
      const exponent = 100 + (bits % 43);
      const x = f32FromBits(((bits & 0x807fffff) | (exponent << 23)) >>> 0);
      if (Math.abs(x) < 65504) inputs.push(x);
    }
    const encoded = half(inputs);
    inputs.forEach((x, i) => {
      const h = encoded[i];
      const error = Math.abs(x - table[h]);
      for (const neighbor of [h - 1, h + 1]) {
        if (neighbor < 0 || (neighbor & 0x7fff) >= 0x7c00 || (neighbor & 0x8000) !== (h & 0x8000))
          continue;
        const other = Math.abs(x - table[neighbor]);
        if (error > other)
          expect.fail(
            `x=${x} encoded as 0x${h.toString(16)} but 0x${neighbor.toString(16)} is closer`,
          );
        if (error === other && (h & 1) === 1)
          expect.fail(`tie at x=${x} rounded to odd 0x${h.toString(16)}`);
      }
    });
    expect(inputs.length).toBeGreaterThan(15000);
  });

  it("decodes data at an odd byte offset", () => {
    const bytes = Buffer.concat([Buffer.from([0]), Buffer.from([0x00, 0x3c, 0x00, 0xc0])]).subarray(
      1,
    );
    expect(bytes.byteOffset % 2).toBe(1);
    expect(Array.from(f16BytesToFloat32(bytes))).toEqual([1, -2]);
  });

  it("rejects an odd byte length", () => {
    expect(() => f16BytesToFloat32(Buffer.alloc(3))).toThrow("not a multiple of 2");
  });
});

describe("BF16 conversion", () => {
  it("round-trips every non-NaN bit pattern", () => {
    const decoded = bf16BytesToFloat32(allPatterns());
    const encoded = bitsOf(float32ToBf16Bytes(decoded));
    for (let b = 0; b < 65536; b++) {
      const isNanPattern = (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;
      if (isNanPattern) {
        expect(Number.isNaN(decoded[b])).toBe(true);
      } else if (encoded[b] !== b) {
        expect.fail(`BF16 pattern 0x${b.toString(16)} came back as 0x${encoded[b].toString(16)}`);
      }
    }
  });

  it("rounds ties to even", () => {
    expect(bfloat([1 + 2 ** -8])).toEqual([0x3f80]);
    expect(bfloat([1 + 3 * 2 ** -8])).toEqual([0x3f82]);
    expect(bfloat([1 + 2 ** -8 + 2 ** -20])).toEqual([0x3f81]);
  });

  it("rounds the largest floats to infinity", () => {
    expect(bfloat([f32FromBits(0x7f7fffff), -f32FromBits(0x7f7fffff)])).toEqual([0x7f80, 0xff80]);
  });

  it("keeps NaN with low payload", () => {
    // Plain truncation of 0x7f800001 would give 0x7f80, which is +Inf.
    const nan = new Float32Array(new Uint32Array([0x7f800001, 0xffc00000]).buffer);
    const result = Array.from(bitsOf(float32ToBf16Bytes(nan)));
    expect(result[0] & 0x7fc0).toBe(0x7fc0);
    expect(result[1]).toBe(0xffc0);
  });
});

describe("encodeFloat32 and decodeFloat32", () => {
  it("round-trips F32, F16 and BF16", () => {
    const values = new Float32Array([0.5, -1, 3, 1024]);
    for (const dtype of ["F32", "F16", "BF16"] as const) {
      expect(Array.from(decodeFloat32(encodeFloat32(values, dtype), dtype)), dtype).toEqual([
        0.5, -1, 3, 1024,
      ]);
    }
  });

  it("writes little-endian bytes", () => {
    expect(Array.from(encodeFloat32(new Float32Array([1]), "F32"))).toEqual([
      0x00, 0x00, 0x80, 0x3f,
    ]);
    expect(Array.from(encodeFloat32(new Float32Array([1]), "F16"))).toEqual([0x00, 0x3c]);
    expect(Array.from(encodeFloat32(new Float32Array([1]), "BF16"))).toEqual([0x80, 0x3f]);
  });

  it("encodes only the subarray view", () => {
    const view = new Float32Array([9, 1, 2, 9]).subarray(1, 3);
    expect(Array.from(decodeFloat32(encodeFloat32(view, "F16"), "F16"))).toEqual([1, 2]);
  });

  it("raises NOT_FLOAT_DTYPE for other dtypes", async () => {
    const error = await expectCheckpointError(
      () => decodeFloat32(Buffer.alloc(8), "F64", "w"),
      "NOT_FLOAT_DTYPE",
    );
    expect(error.message).toContain('tensor "w" has dtype F64');
  });
});
