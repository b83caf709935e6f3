import { describe, expect, it } from "vitest";
import { BufferByteSource } from "../../src/checkpoint/byte-source.ts";
import { MAX_HEADER_BYTES, MAX_TENSOR_RANK } from "../../src/checkpoint/header.ts";
import { findDuplicateKey } from "../../src/checkpoint/json-keys.ts";
import { MAX_TENSOR_NAME_LENGTH } from "../../src/checkpoint/names.ts";
import { openSafetensors } from "../../src/checkpoint/safetensors.ts";
import { assemble, expectCheckpointError, openBytes, ShrunkSource } from "./helpers.ts";

const f32 = (shape: number[], begin: number, end: number) => ({
  dtype: "F32",
  shape,
  data_offsets: [begin, end],
});

describe("header length prefix", () => {
  it("rejects a file shorter than 8 bytes", async () => {
    const error = await expectCheckpointError(
      openBytes(Buffer.from([1, 2, 3, 4, 5])),
      "HEADER_TRUNCATED",
    );
    expect(error.status).toBe(422);
    expect(error.message).toContain("file has 5 bytes");
  });

  it("rejects short header read", async () => {
    const bytes = assemble({ a: f32([1], 0, 4) }, 4);
    const source = new ShrunkSource(bytes.subarray(0, 20), bytes.length);
    const error = await expectCheckpointError(openSafetensors(source), "HEADER_TRUNCATED");
    expect(error.message).toContain("header bytes");
  });

  it("rejects length above 100 MB cap", async () => {
    const bytes = assemble("{}", 0, { declaredLength: BigInt(MAX_HEADER_BYTES + 1) });
    const error = await expectCheckpointError(openBytes(bytes), "HEADER_TOO_LARGE");
    expect(error.message).toContain(`declares ${MAX_HEADER_BYTES + 1} bytes`);
  });

  it("rejects the largest u64 length", async () => {
    const bytes = assemble("{}", 0, { declaredLength: 2n ** 64n - 1n });
    const error = await expectCheckpointError(openBytes(bytes), "HEADER_TOO_LARGE");
    expect(error.message).toContain("18446744073709551615");
  });

  it("rejects length past file end", async () => {
    const bytes = assemble("{}", 0, { declaredLength: 3n });
    const error = await expectCheckpointError(openBytes(bytes), "HEADER_TOO_LARGE");
    expect(error.message).toContain("only 2 bytes follow it");
  });

  it("honors a lower header cap from options", async () => {
    const bytes = assemble({ a: f32([1], 0, 4) }, 4);
    const source = new BufferByteSource(bytes);
    await expectCheckpointError(
      openSafetensors(source, { maxHeaderBytes: 16 }),
      "HEADER_TOO_LARGE",
    );
  });
});

describe("header text", () => {
  it("rejects bytes that are not UTF-8", async () => {
    const bytes = assemble(Uint8Array.from([0x7b, 0xff, 0x7d]));
    const error = await expectCheckpointError(openBytes(bytes), "HEADER_NOT_UTF8");
    expect(error.message).toContain("not valid UTF-8");
  });

  it("rejects an overlong UTF-8 encoding", async () => {
    // 0xC0 0xAF is an overlong "/", which a strict decoder must reject.
    const bytes = assemble(Uint8Array.from([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d]));
    await expectCheckpointError(openBytes(bytes), "HEADER_NOT_UTF8");
  });

  it("rejects text that is not JSON", async () => {
    const error = await expectCheckpointError(openBytes(assemble("{not json")), "HEADER_NOT_JSON");
    expect(error.message).toContain("not valid JSON");
  });

  it("rejects an empty header", async () => {
    await expectCheckpointError(openBytes(assemble("")), "HEADER_NOT_JSON");
  });

  it("rejects a byte order mark", async () => {
    await expectCheckpointError(openBytes(assemble("\ufeff{}")), "HEADER_NOT_JSON");
  });

  it.each([
    ["an array", "[]"],
    ["null", "null"],
    ["a number", "42"],
    ["a string", '"x"'],
  ])("rejects a header that is %s", async (kind, text) => {
    const error = await expectCheckpointError(openBytes(assemble(text)), "HEADER_NOT_OBJECT");
    expect(error.message).toContain(`header is ${kind === "a number" ? "a number" : kind}`);
  });
});

describe("duplicate keys", () => {
  it("rejects a repeated tensor name", async () => {
    const entry = JSON.stringify(f32([1], 0, 4));
    const bytes = assemble(`{"w":${entry},"w":${entry}}`, 4);
    const error = await expectCheckpointError(openBytes(bytes), "DUPLICATE_KEY");
    expect(error.message).toContain('repeats the key "w"');
  });

  it("rejects repeated tensor entry field", async () => {
    const bytes = assemble(
      '{"w":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}}',
      4,
    );
    const error = await expectCheckpointError(openBytes(bytes), "DUPLICATE_KEY");
    expect(error.message).toContain('repeats the key "dtype" inside "w"');
  });

  it("rejects a repeated metadata key", async () => {
    const bytes = assemble('{"__metadata__":{"format":"pt","format":"np"}}');
    const error = await expectCheckpointError(openBytes(bytes), "DUPLICATE_KEY");
    expect(error.message).toContain('"format" inside "__metadata__"');
  });

  it("compares keys after escape decoding", async () => {
    const entry = JSON.stringify(f32([1], 0, 4));
    const bytes = assemble(`{"a":${entry},"\\u0061":${entry}}`, 4);
    const error = await expectCheckpointError(openBytes(bytes), "DUPLICATE_KEY");
    expect(error.message).toContain('key "a"');
  });

  it("scanner reports nested key path", () => {
    const duplicate = findDuplicateKey('{"x":[1,{"y":{"k":1,"k":2}}],"z":"{\\"k\\":1,\\"k\\":2}"}');
    expect(duplicate).toEqual({ key: "k", path: ["x", "[]", "y"] });
  });

  it("scanner ignores sibling and string keys", () => {
    expect(findDuplicateKey('{"a":{"k":1},"b":{"k":2},"c":"\\"a\\":1"}')).toBeUndefined();
  });
});

describe("tensor names", () => {
  it.each(["__proto__", "constructor", "prototype"])("rejects the unsafe name %s", async (name) => {
    const bytes = assemble(`{${JSON.stringify(name)}:${JSON.stringify(f32([1], 0, 4))}}`, 4);
    const error = await expectCheckpointError(openBytes(bytes), "UNSAFE_NAME");
    expect(error.message).toContain(JSON.stringify(name));
  });

  it.each([
    ["empty", ""],
    ["with a control character", "a\u0001b"],
    ["with a C1 control character", "a\u0085b"],
    ["with a lone surrogate", "a\ud800b"],
    ["too long", "w".repeat(MAX_TENSOR_NAME_LENGTH + 1)],
  ])("rejects a name that is %s", async (_kind, name) => {
    const bytes = assemble(`{${JSON.stringify(name)}:${JSON.stringify(f32([1], 0, 4))}}`, 4);
    const error = await expectCheckpointError(openBytes(bytes), "INVALID_NAME");
    expect(error.message).toContain("tensor name");
  });

  it("rejects an entry that is not an object", async () => {
    const error = await expectCheckpointError(
      openBytes(assemble('{"w":"F32"}')),
      "INVALID_TENSOR_ENTRY",
    );
    expect(error.message).toContain('tensor "w": entry is a string');
  });
});

describe("metadata", () => {
  it.each([
    ["an array", '["a"]'],
    ["null", "null"],
    ["a string", '"pt"'],
  ])("rejects __metadata__ that is %s", async (kind, json) => {
    const error = await expectCheckpointError(
      openBytes(assemble(`{"__metadata__":${json}}`)),
      "INVALID_METADATA",
    );
    expect(error.message).toContain(`__metadata__ is ${kind}`);
  });

  it("rejects non-string metadata value", async () => {
    const error = await expectCheckpointError(
      openBytes(assemble('{"__metadata__":{"step":1000}}')),
      "INVALID_METADATA",
    );
    expect(error.message).toContain('key "step" is a number');
  });

  it("rejects the metadata key __proto__", async () => {
    await expectCheckpointError(
      openBytes(assemble('{"__metadata__":{"__proto__":"x"}}')),
      "INVALID_METADATA",
    );
  });
});

describe("tensor entries", () => {
  it.each([
    ["unknown", { dtype: "F128", shape: [1], data_offsets: [0, 4] }, "F128"],
    ["lowercase", { dtype: "f32", shape: [1], data_offsets: [0, 4] }, "f32"],
    ["missing", { shape: [1], data_offsets: [0, 4] }, "missing"],
    ["not a string", { dtype: 4, shape: [1], data_offsets: [0, 4] }, "4"],
  ])("rejects a dtype that is %s", async (_kind, entry, shown) => {
    const error = await expectCheckpointError(
      openBytes(assemble({ w: entry }, 4)),
      "UNKNOWN_DTYPE",
    );
    expect(error.message).toContain(
      `dtype ${shown === "F128" || shown === "f32" ? `"${shown}"` : shown}`,
    );
  });

  it.each([
    ["not an array", "4"],
    ["negative", [-1, 4]],
    ["fractional", [1.5]],
    ["a string dimension", ["4"]],
    ["a null dimension", [null]],
  ])("rejects a shape that is %s", async (_kind, shape) => {
    const bytes = assemble({ w: { dtype: "F32", shape, data_offsets: [0, 4] } }, 4);
    const error = await expectCheckpointError(openBytes(bytes), "INVALID_SHAPE");
    expect(error.message).toContain('tensor "w": shape');
  });

  it("rejects more dimensions than the rank cap", async () => {
    const shape = new Array(MAX_TENSOR_RANK + 1).fill(1);
    const error = await expectCheckpointError(
      openBytes(assemble({ w: f32(shape, 0, 4) }, 4)),
      "INVALID_SHAPE",
    );
    expect(error.message).toContain(`${MAX_TENSOR_RANK + 1} dimensions`);
  });

  it("rejects a shape whose byte size passes 2^53", async () => {
    const error = await expectCheckpointError(
      openBytes(assemble({ w: f32([2 ** 26, 2 ** 26, 2 ** 26], 0, 4) }, 4)),
      "SHAPE_OVERFLOW",
    );
    expect(error.message).toContain(`needs ${4n * 2n ** 78n} bytes`);
  });

  it("rejects a dimension above 2^53", async () => {
    await expectCheckpointError(
      openBytes(assemble('{"w":{"dtype":"F32","shape":[1e300],"data_offsets":[0,4]}}', 4)),
      "SHAPE_OVERFLOW",
    );
  });

  it("rejects offsets that disagree with shape x dtype", async () => {
    const name = "model.layers.0.mlp.up_proj.weight";
    const error = await expectCheckpointError(
      openBytes(assemble({ [name]: f32([4, 8], 0, 100) }, 100)),
      "SIZE_MISMATCH",
    );
    expect(error.message).toContain(
      `tensor "${name}": data_offsets [0, 100] cover 100 bytes but shape [4, 8] x F32 needs 128`,
    );
  });

  it.each([
    ["one element", [0]],
    ["three elements", [0, 4, 8]],
    ["not an array", "0-4"],
    ["missing", undefined],
    ["negative", [-4, 0]],
    ["fractional", [0, 4.5]],
    ["string elements", ["0", "4"]],
    ["begin after end", [8, 4]],
  ])("rejects data_offsets that are %s", async (_kind, offsets) => {
    const bytes = assemble({ w: { dtype: "U8", shape: [4], data_offsets: offsets } }, 4);
    const error = await expectCheckpointError(openBytes(bytes), "INVALID_OFFSETS");
    expect(error.message).toContain('tensor "w": data_offsets');
  });

  it("rejects offsets past the end of the data", async () => {
    const bytes = assemble({ w: f32([4], 0, 16) }, 8);
    const error = await expectCheckpointError(openBytes(bytes), "OFFSETS_OUT_OF_BOUNDS");
    expect(error.message).toContain("data section of 8 bytes");
  });

  it("rejects offsets above 2^53", async () => {
    const bytes = assemble(
      '{"w":{"dtype":"F32","shape":[0],"data_offsets":[1152921504606846976,1152921504606846976]}}',
    );
    await expectCheckpointError(openBytes(bytes), "OFFSETS_OUT_OF_BOUNDS");
  });
});

describe("data layout", () => {
  it("rejects overlapping tensors", async () => {
    const bytes = assemble({ a: f32([4], 0, 16), b: f32([4], 8, 24) }, 24);
    const error = await expectCheckpointError(openBytes(bytes), "OVERLAPPING_TENSORS");
    expect(error.message).toContain(
      '"a" [0, 16] and "b" [8, 24] overlap (they share bytes 8 to 16)',
    );
  });

  it("rejects zero-size tensor inside another", async () => {
    const bytes = assemble({ a: f32([4], 0, 16), z: f32([0], 8, 8) }, 16);
    const error = await expectCheckpointError(openBytes(bytes), "OVERLAPPING_TENSORS");
    expect(error.message).toContain("zero-size tensor lies inside the other at offset 8");
  });

  it("rejects a gap between tensors", async () => {
    const bytes = assemble({ a: f32([4], 0, 16), b: f32([4], 20, 36) }, 36);
    const error = await expectCheckpointError(openBytes(bytes), "GAP_BETWEEN_TENSORS");
    expect(error.message).toContain(
      'tensor "b" starts at data offset 20 but tensor "a" ends at 16: 4 bytes',
    );
  });

  it("rejects bytes before the first tensor", async () => {
    const bytes = assemble({ a: f32([4], 4, 20) }, 20);
    const error = await expectCheckpointError(openBytes(bytes), "GAP_BETWEEN_TENSORS");
    expect(error.message).toContain("the start of the data section ends at 0");
  });

  it("rejects trailing bytes", async () => {
    const bytes = assemble({ a: f32([4], 0, 16) }, 20);
    const error = await expectCheckpointError(openBytes(bytes), "TRAILING_BYTES");
    expect(error.message).toContain("data section has 20 bytes but tensors cover only 16");
  });

  it("rejects data after a metadata-only header", async () => {
    await expectCheckpointError(
      openBytes(assemble({ __metadata__: { a: "b" } }, 1)),
      "TRAILING_BYTES",
    );
  });

  it("rejects more tensors than the cap", async () => {
    const bytes = assemble({ a: f32([1], 0, 4), b: f32([1], 4, 8), c: f32([1], 8, 12) }, 12);
    const error = await expectCheckpointError(
      openSafetensors(new BufferByteSource(bytes), { maxTensors: 2 }),
      "TOO_MANY_TENSORS",
    );
    expect(error.message).toContain("lists 3 tensors, above the limit of 2");
  });
});

describe("valid edge cases", () => {
  it("accepts zero-size tensors at tensor boundaries", async () => {
    const bytes = assemble(
      {
        empty: f32([0, 4], 0, 0),
        a: f32([2], 0, 8),
        tail: { dtype: "BF16", shape: [3, 0], data_offsets: [8, 8] },
      },
      8,
    );
    const file = await openBytes(bytes);
    expect(file.tensors.map((t) => t.name)).toEqual(["empty", "a", "tail"]);
    expect(file.getTensor("empty")?.byteLength).toBe(0);
    expect(await file.readTensorFloat32("empty")).toEqual(new Float32Array(0));
    expect(await file.readTensorFloat32("tail")).toEqual(new Float32Array(0));
  });

  it("accepts a scalar", async () => {
    const data = Buffer.from(new Float32Array([2.5]).buffer);
    const file = await openBytes(assemble({ s: f32([], 0, 4) }, data));
    expect(file.getTensor("s")?.shape).toEqual([]);
    expect(Array.from(await file.readTensorFloat32("s"))).toEqual([2.5]);
  });

  it("accepts a metadata-only file", async () => {
    const file = await openBytes(assemble({ __metadata__: { format: "pt", note: "empty" } }));
    expect(file.tensors).toEqual([]);
    expect({ ...file.metadata }).toEqual({ format: "pt", note: "empty" });
    expect(Object.getPrototypeOf(file.metadata)).toBeNull();
  });

  it("accepts an empty header object", async () => {
    const file = await openBytes(assemble("{}"));
    expect(file.tensors).toEqual([]);
    expect(file.headerLength).toBe(2);
  });

  it("accepts a header padded with spaces", async () => {
    const header = `${JSON.stringify({ a: f32([1], 0, 4) })}      `;
    const data = Buffer.from(new Float32Array([7]).buffer);
    const file = await openBytes(assemble(header, data));
    expect(file.headerLength).toBe(header.length);
    expect(file.getTensor("a")?.byteOffset).toBe(8 + header.length);
    expect(Array.from(await file.readTensorFloat32("a"))).toEqual([7]);
  });

  it("lists tensors in data order", async () => {
    const data = Buffer.from(new Float32Array([1, 2, 3]).buffer);
    const file = await openBytes(
      assemble({ c: f32([1], 8, 12), a: f32([1], 0, 4), b: f32([1], 4, 8) }, data),
    );
    expect(file.tensors.map((t) => t.name)).toEqual(["a", "b", "c"]);
    expect(Array.from(await file.readTensorFloat32("c"))).toEqual([3]);
  });

  it("keeps Object method names apart", async () => {
    const file = await openBytes(
      assemble({ toString: f32([1], 0, 4), hasOwnProperty: f32([1], 4, 8) }, 8),
    );
    expect(file.getTensor("toString")?.byteLength).toBe(4);
    expect(file.getTensor("valueOf")).toBeUndefined();
  });
});
