import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BufferByteSource, FileByteSource } from "../../src/checkpoint/byte-source.ts";
import { openSafetensors } from "../../src/checkpoint/safetensors.ts";
import {
  assemble,
  expectCheckpointError,
  FIXTURE_DIR,
  openBytes,
  RecordingSource,
  ShrunkSource,
  withTempDir,
} from "./helpers.ts";

const FIXTURE_MODEL = join(FIXTURE_DIR, "model.safetensors");

function u16Bytes(values: number[]): Buffer {
  const bytes = Buffer.alloc(values.length * 2);
  values.forEach((value, i) => {
    bytes.writeUInt16LE(value, i * 2);
  });
  return bytes;
}

describe("openSafetensors reads", () => {
  it("reads header twice, tensor once", async () => {
    const fileSource = await FileByteSource.open(FIXTURE_MODEL);
    try {
      const source = new RecordingSource(fileSource);
      const file = await openSafetensors(source);
      expect(source.reads).toEqual([
        { offset: 0, length: 8 },
        { offset: 8, length: file.headerLength },
      ]);

      const info = file.getTensor("model.layers.2.self_attn.k_proj.weight");
      if (info === undefined)
        throw new Error("fixture lacks model.layers.2.self_attn.k_proj.weight");
      const data = await file.readTensorFloat32(info);
      expect(source.reads.slice(2)).toEqual([{ offset: info.byteOffset, length: info.byteLength }]);
      expect(data.length).toBe(32 * 64);
    } finally {
      await fileSource.close();
    }
  });

  it("returns F32 values equal to the file bytes", async () => {
    const whole = readFileSync(FIXTURE_MODEL);
    const source = await FileByteSource.open(FIXTURE_MODEL);
    try {
      const file = await openSafetensors(source);
      const info = file.getTensor("model.layers.4.mlp.down_proj.weight");
      if (info === undefined) throw new Error("fixture lacks model.layers.4.mlp.down_proj.weight");
      const data = await file.readTensorFloat32(info);
      expect(info.shape).toEqual([64, 172]);
      for (const i of [0, 1, 171, 172, 5000, 64 * 172 - 1]) {
        expect(data[i]).toBe(whole.readFloatLE(info.byteOffset + 4 * i));
      }
    } finally {
      await source.close();
    }
  });

  it("decodes F16 values exactly", async () => {
    // 1, -2, 65504 (max), 2^-24 (min subnormal), 2^-14 (min normal), -0, +Inf, NaN
    const bits = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x8000, 0x7c00, 0x7e00];
    const file = await openBytes(
      assemble({ h: { dtype: "F16", shape: [8], data_offsets: [0, 16] } }, u16Bytes(bits)),
    );
    const data = await file.readTensorFloat32("h");
    expect(Array.from(data.subarray(0, 7))).toEqual([
      1,
      -2,
      65504,
      2 ** -24,
      2 ** -14,
      -0,
      Infinity,
    ]);
    expect(Object.is(data[5], -0)).toBe(true);
    expect(Number.isNaN(data[7])).toBe(true);
  });

  it("decodes BF16 values exactly", async () => {
    // 1, -3, the smallest subnormal 2^-133, +Inf, -Inf, 3.140625
    const bits = [0x3f80, 0xc040, 0x0001, 0x7f80, 0xff80, 0x4049];
    const file = await openBytes(
      assemble({ b: { dtype: "BF16", shape: [2, 3], data_offsets: [0, 12] } }, u16Bytes(bits)),
    );
    expect(Array.from(await file.readTensorFloat32("b"))).toEqual([
      1,
      -3,
      2 ** -133,
      Infinity,
      -Infinity,
      3.140625,
    ]);
  });

  it("decodes unaligned F32 data", async () => {
    const values = new Float32Array([1.5, -2.25]);
    const bytes = assemble(
      { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } },
      Buffer.from(values.buffer),
    );
    // One leading byte shifts every offset, so no Float32Array view can start at the data.
    const shifted = Buffer.concat([Buffer.from([0]), bytes]).subarray(1);
    const file = await openBytes(shifted);
    const info = file.getTensor("w");
    if (info === undefined) throw new Error("tensor w missing");
    expect((shifted.byteOffset + info.byteOffset) % 4).not.toBe(0);
    expect(Array.from(await file.readTensorFloat32(info))).toEqual([1.5, -2.25]);
  });

  it("integer tensor as float, no read", async () => {
    const bytes = assemble({ ids: { dtype: "I32", shape: [2], data_offsets: [0, 8] } }, 8);
    const source = new RecordingSource(new BufferByteSource(bytes));
    const file = await openSafetensors(source);
    const error = await expectCheckpointError(file.readTensorFloat32("ids"), "NOT_FLOAT_DTYPE");
    expect(error.message).toContain('tensor "ids" has dtype I32');
    expect(source.reads).toHaveLength(2);
    expect(await file.readTensorBytes("ids")).toEqual(Buffer.alloc(8));
  });

  it("source that ends early", async () => {
    const bytes = assemble({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, 16);
    const file = await openSafetensors(
      new ShrunkSource(bytes.subarray(0, bytes.length - 4), bytes.length),
    );
    const error = await expectCheckpointError(file.readTensorBytes("w"), "DATA_TRUNCATED");
    expect(error.message).toContain("read 12 of 16 bytes");
  });

  it("rejects a TensorInfo from another file", async () => {
    const header = { w: { dtype: "F32", shape: [1], data_offsets: [0, 4] } };
    const first = await openBytes(assemble(header, 4));
    const second = await openBytes(assemble(header, 4));
    const foreign = second.getTensor("w");
    if (foreign === undefined) throw new Error("tensor w missing");
    await expect(first.readTensorBytes(foreign)).rejects.toThrow(RangeError);
    await expect(first.readTensorBytes("missing")).rejects.toThrow(
      'tensor "missing" is not in this safetensors file',
    );
  });
});

describe("FileByteSource", () => {
  it("returns short reads at end", async () => {
    await withTempDir(async (directory) => {
      const path = join(directory, "bytes.bin");
      await writeFile(path, Buffer.from([1, 2, 3, 4, 5]));
      const source = await FileByteSource.open(path);
      try {
        expect(source.size).toBe(5);
        expect(Array.from(await source.read(3, 10))).toEqual([4, 5]);
        expect(Array.from(await source.read(9, 2))).toEqual([]);
        expect((await source.read(0, 0)).byteLength).toBe(0);
        await expect(source.read(-1, 2)).rejects.toThrow(RangeError);
        await expect(source.read(0, 1.5)).rejects.toThrow(RangeError);
      } finally {
        await source.close();
      }
    });
  });

  it("rejects a directory", async () => {
    await withTempDir(async (directory) => {
      await expect(FileByteSource.open(directory)).rejects.toThrow("is not a regular file");
    });
  });
});
