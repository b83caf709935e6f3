/**
 * Conversions between little-endian F32/F16/BF16 tensor bytes and Float32Array.
 * Encoding rounds to nearest, ties to even, and keeps NaN as a quiet NaN with its sign.
 */
import { endianness } from "node:os";
import { type FloatDtype, isFloatDtype } from "./dtypes.ts";
import { CheckpointError, quote } from "./errors.ts";

// Typed arrays use the host byte order and safetensors stores little-endian,
// so the zero-copy views below are only valid on little-endian hosts.
const LITTLE_ENDIAN_HOST = endianness() === "LE";

/** Raises on big-endian hosts, where typed-array views would read safetensors bytes reversed. */
export function assertLittleEndianHost(): void {
  if (!LITTLE_ENDIAN_HOST) {
    throw new Error(
      "float conversion supports little-endian hosts only: run the service on x86-64 or arm64",
    );
  }
}

let f16ToF32Bits: Uint32Array | undefined;

/** Float32 bit pattern of each of the 65536 half-precision bit patterns, built on first use. */
function f16Table(): Uint32Array {
  if (f16ToF32Bits === undefined) {
    f16ToF32Bits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16ToF32Bits[h] = halfBitsToFloatBits(h);
  }
  return f16ToF32Bits;
}

/** Widens one F16 bit pattern to the F32 bit pattern of the same value (exact). */
export function halfBitsToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exponent = (h >>> 10) & 0x1f;
  let mantissa = h & 0x3ff;
  if (exponent === 0x1f) {
    // Inf or NaN: the F16 payload moves to the top of the F32 mantissa.
    return (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
  }
  if (exponent !== 0) {
    return (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
  }
  if (mantissa === 0) return sign >>> 0;
  // Subnormal F16 (mantissa x 2^-24): shift until the leading bit reaches the
  // implicit position, lowering the exponent once per shift.
  let e = 1;
  while ((mantissa & 0x400) === 0) {
    mantissa <<= 1;
    e--;
  }
  mantissa &= 0x3ff;
  return (sign | ((e + 112) << 23) | (mantissa << 13)) >>> 0;
}

/** Narrows one F32 bit pattern to F16 bits, rounding to nearest with ties to even. */
export function floatBitsToHalfBits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const exponent = (f >>> 23) & 0xff;
  const mantissa = f & 0x7fffff;

  if (exponent === 0xff) {
    if (mantissa === 0) return sign | 0x7c00;
    // NaN: keep the top payload bits and set the quiet bit so it stays a NaN.
    return sign | 0x7e00 | (mantissa >>> 13);
  }

  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;

  if (halfExponent <= 0) {
    // Result is an F16 subnormal (or zero): value = q x 2^-24 with
    // q = (1.mantissa x 2^23) >> (14 - halfExponent).
    const shift = 14 - halfExponent;
    if (shift > 24) return sign;
    const significand = mantissa | 0x800000;
    let q = significand >>> shift;
    const remainder = significand & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (remainder > half || (remainder === half && (q & 1) === 1)) q++;
    // A carry out of the subnormal range yields 0x0400, the smallest normal.
    return sign | q;
  }

  let h = (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  if (remainder > 0x1000 || (remainder === 0x1000 && (h & 1) === 1)) h++;
  // A carry into the exponent is correct, and 0x7c00 after a carry is +Inf.
  return sign | h;
}

/** Narrows one F32 bit pattern to BF16 bits, rounding to nearest with ties to even. */
export function floatBitsToBfloatBits(f: number): number {
  if ((f & 0x7f800000) === 0x7f800000 && (f & 0x7fffff) !== 0) {
    return ((f >>> 16) | 0x0040) & 0xffff;
  }
  const roundingBias = 0x7fff + ((f >>> 16) & 1);
  return ((f + roundingBias) >>> 16) & 0xffff;
}

/** Returns a Uint16Array over `bytes`, copying only when the start is not 2-byte aligned. */
function uint16View(bytes: Uint8Array): Uint16Array {
  if (bytes.byteOffset % 2 === 0) {
    return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Uint16Array(copy.buffer);
}

function assertWholeElements(bytes: Uint8Array, elementSize: number, dtype: FloatDtype): void {
  if (bytes.byteLength % elementSize !== 0) {
    throw new RangeError(
      `${dtype} data has ${bytes.byteLength} bytes, not a multiple of ${elementSize}: pass whole elements`,
    );
  }
}

/** Decodes BF16 bytes: each 16-bit pattern is the high half of an F32 pattern. */
export function bf16BytesToFloat32(bytes: Uint8Array): Float32Array {
  assertLittleEndianHost();
  assertWholeElements(bytes, 2, "BF16");
  const input = uint16View(bytes);
  const bits = new Uint32Array(input.length);
  for (let i = 0; i < input.length; i++) bits[i] = input[i] << 16;
  return new Float32Array(bits.buffer);
}

/** Decodes F16 bytes through the 65536-entry table. */
export function f16BytesToFloat32(bytes: Uint8Array): Float32Array {
  assertLittleEndianHost();
  assertWholeElements(bytes, 2, "F16");
  const table = f16Table();
  const input = uint16View(bytes);
  const bits = new Uint32Array(input.length);
  for (let i = 0; i < input.length; i++) bits[i] = table[input[i]];
  return new Float32Array(bits.buffer);
}

/**
 * Decodes F32 bytes. The result shares memory with `bytes` when the start is
 * 4-byte aligned, otherwise it is a copy.
 */
export function f32BytesToFloat32(bytes: Uint8Array): Float32Array {
  assertLittleEndianHost();
  assertWholeElements(bytes, 4, "F32");
  if (bytes.byteOffset % 4 === 0) {
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}

export function float32ToF16Bytes(data: Float32Array): Buffer {
  assertLittleEndianHost();
  const input = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const output = new Uint16Array(data.length);
  for (let i = 0; i < input.length; i++) output[i] = floatBitsToHalfBits(input[i]);
  return Buffer.from(output.buffer, 0, output.byteLength);
}

export function float32ToBf16Bytes(data: Float32Array): Buffer {
  assertLittleEndianHost();
  const input = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const output = new Uint16Array(data.length);
  for (let i = 0; i < input.length; i++) output[i] = floatBitsToBfloatBits(input[i]);
  return Buffer.from(output.buffer, 0, output.byteLength);
}

/** Returns the F32 bytes of `data` without copying. */
export function float32ToF32Bytes(data: Float32Array): Buffer {
  assertLittleEndianHost();
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Raises NOT_FLOAT_DTYPE unless `dtype` is F32, F16 or BF16. */
export function assertFloatDtype(dtype: string, name: string): asserts dtype is FloatDtype {
  if (!isFloatDtype(dtype)) {
    throw new CheckpointError(
      "NOT_FLOAT_DTYPE",
      `tensor ${quote(name)} has dtype ${dtype}, which has no float32 conversion: only F32, F16 and BF16 tensors can be read as floats (read it with readTensorBytes instead)`,
    );
  }
}

/** Decodes tensor bytes of a float dtype; any other dtype raises NOT_FLOAT_DTYPE. */
export function decodeFloat32(bytes: Uint8Array, dtype: string, name = "tensor"): Float32Array {
  assertFloatDtype(dtype, name);
  if (dtype === "F32") return f32BytesToFloat32(bytes);
  if (dtype === "F16") return f16BytesToFloat32(bytes);
  return bf16BytesToFloat32(bytes);
}

/** Encodes float32 values as little-endian bytes of the given float dtype. */
export function encodeFloat32(data: Float32Array, dtype: FloatDtype): Buffer {
  if (dtype === "F32") return float32ToF32Bytes(data);
  if (dtype === "F16") return float32ToF16Bytes(data);
  return float32ToBf16Bytes(data);
}
