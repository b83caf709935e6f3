import { execFileSync, spawnSync } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FileByteSource } from "../../src/checkpoint/byte-source.ts";
import { openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import { encodeFloat32 } from "../../src/checkpoint/float-codec.ts";
import { openSafetensors } from "../../src/checkpoint/safetensors.ts";
import {
  createSafetensorsWriter,
  type PlannedTensor,
  SafetensorsWriter,
} from "../../src/checkpoint/writer.ts";
import { expectCheckpointError, ramp, withTempDir } from "./helpers.ts";

const PLAN: PlannedTensor[] = [
  { name: "w", dtype: "F32", shape: [2, 3] },
  { name: "h", dtype: "F16", shape: [4] },
  { name: "ids", dtype: "I32", shape: [2] },
  { name: "empty", dtype: "F32", shape: [0, 5] },
  { name: "s", dtype: "BF16", shape: [] },
];

async function writePlan(writer: SafetensorsWriter): Promise<void> {
  await writer.writeTensor("w", ramp(6, 0.5));
  await writer.writeTensor("h", encodeFloat32(new Float32Array([1, -2, 0.5, 4]), "F16"));
  await writer.writeTensor("ids", new Int32Array([7, -9]));
  await writer.writeTensor("empty", new Float32Array(0));
  await writer.writeTensor("s", encodeFloat32(new Float32Array([3]), "BF16"));
}

function hasPython(module?: string): boolean {
  const code = module === undefined ? "pass" : `import ${module}`;
  return spawnSync("python3", ["-c", code], { stdio: "ignore" }).status === 0;
}

/**
 * Reads safetensors files with Python's standard library only, independently
 * of the TypeScript reader: checks the prefix, alignment, JSON and tiling,
 * and prints every tensor as float or int values.
 */
const PYTHON_READER = `
import json, struct, sys
out = {}
for path in sys.argv[1:]:
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert (8 + n) % 8 == 0, "header not 8-byte aligned"
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    end = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, e = info["data_offsets"]
        assert b == end, "tensors do not tile the data"
        end = e
        raw = data[b:e]
        fmt = {"F32": "f", "F16": "e", "I32": "i"}.get(info["dtype"])
        if fmt is None:
            values = list(raw)
        else:
            values = list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw))
        out[name] = {"dtype": info["dtype"], "shape": info["shape"], "values": values, "meta": meta}
    assert end == len(data), "trailing bytes"
print(json.dumps(out))
`;

describe("SafetensorsWriter single file", () => {
  it("writes a file the reader returns unchanged", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({
        directory,
        tensors: PLAN,
        metadata: { source: "test" },
      });
      await writePlan(writer);
      const result = await writer.close();
      expect(result).toEqual({ files: ["model.safetensors"], totalSize: 24 + 8 + 8 + 0 + 2 });
      expect(await readdir(directory)).toEqual(["model.safetensors"]);

      const source = await FileByteSource.open(join(directory, "model.safetensors"));
      try {
        const file = await openSafetensors(source);
        expect((8 + file.headerLength) % 8).toBe(0);
        expect({ ...file.metadata }).toEqual({ format: "pt", source: "test" });
        expect(file.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual(
          PLAN.map((t) => [t.name, t.dtype, t.shape]),
        );
        expect(Array.from(await file.readTensorFloat32("w"))).toEqual([0, 0.5, 1, 1.5, 2, 2.5]);
        expect(Array.from(await file.readTensorFloat32("h"))).toEqual([1, -2, 0.5, 4]);
        expect(
          Array.from(new Int32Array((await file.readTensorBytes("ids")).buffer.slice(0))),
        ).toEqual([7, -9]);
        expect((await file.readTensorFloat32("empty")).length).toBe(0);
        expect(Array.from(await file.readTensorFloat32("s"))).toEqual([3]);
      } finally {
        await source.close();
      }
    });
  });

  it("keeps plan order for numeric names", async () => {
    await withTempDir(async (directory) => {
      const tensors = [
        { name: "10", dtype: "U8", shape: [1] },
        { name: "2", dtype: "U8", shape: [1] },
      ];
      const writer = await createSafetensorsWriter({
        directory,
        tensors,
        metadata: { format: "np" },
      });
      await writer.writeTensor("10", Buffer.from([10]));
      await writer.writeTensor("2", Buffer.from([2]));
      await writer.close();

      const bytes = await readFile(join(directory, "model.safetensors"));
      const headerText = bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString("utf8");
      expect(headerText.indexOf('"10"')).toBeLessThan(headerText.indexOf('"2"'));
      expect(headerText).toContain('"__metadata__":{"format":"np"}');
      expect(Array.from(bytes.subarray(bytes.length - 2))).toEqual([10, 2]);
    });
  });

  it("writes a header-only file for an empty plan", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({ directory, tensors: [] });
      expect((await writer.close()).files).toEqual(["model.safetensors"]);
      const source = await FileByteSource.open(join(directory, "model.safetensors"));
      try {
        const file = await openSafetensors(source);
        expect(file.tensors).toEqual([]);
        expect(source.size % 8).toBe(0);
      } finally {
        await source.close();
      }
    });
  });

  it.skipIf(!hasPython())("output parses in stdlib Python", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({ directory, tensors: PLAN });
      await writePlan(writer);
      await writer.close();
      const output = execFileSync(
        "python3",
        ["-c", PYTHON_READER, join(directory, "model.safetensors")],
        {
          encoding: "utf8",
        },
      );
      const parsed = JSON.parse(output);
      expect(parsed.w).toEqual({
        dtype: "F32",
        shape: [2, 3],
        values: [0, 0.5, 1, 1.5, 2, 2.5],
        meta: { format: "pt" },
      });
      expect(parsed.h.values).toEqual([1, -2, 0.5, 4]);
      expect(parsed.ids.values).toEqual([7, -9]);
      expect(parsed.empty.values).toEqual([]);
      expect(parsed.s).toMatchObject({ dtype: "BF16", shape: [], values: [0x40, 0x40] });
    });
  });

  it.skipIf(!hasPython("safetensors"))("output loads in safetensors package", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({ directory, tensors: PLAN.slice(0, 3) });
      await writer.writeTensor("w", ramp(6, 0.5));
      await writer.writeTensor("h", encodeFloat32(new Float32Array([1, -2, 0.5, 4]), "F16"));
      await writer.writeTensor("ids", new Int32Array([7, -9]));
      await writer.close();
      const script = [
        "import json, sys",
        "from safetensors.numpy import load_file",
        "t = load_file(sys.argv[1])",
        "print(json.dumps({k: v.tolist() for k, v in t.items()}))",
      ].join("\n");
      const output = execFileSync("python3", ["-c", script, join(directory, "model.safetensors")], {
        encoding: "utf8",
      });
      expect(JSON.parse(output)).toEqual({
        w: [
          [0, 0.5, 1],
          [1.5, 2, 2.5],
        ],
        h: [1, -2, 0.5, 4],
        ids: [7, -9],
      });
    });
  });
});

describe("SafetensorsWriter shards", () => {
  const tensors: PlannedTensor[] = [
    { name: "a", dtype: "F32", shape: [12] },
    { name: "b", dtype: "F32", shape: [12] },
    { name: "big", dtype: "F32", shape: [25] },
    { name: "c", dtype: "F32", shape: [2] },
    { name: "d", dtype: "F32", shape: [2] },
  ];

  async function writeSharded(directory: string): Promise<SafetensorsWriter> {
    const writer = await createSafetensorsWriter({ directory, tensors, maxShardBytes: 64 });
    await writer.writeTensor("a", ramp(12, 1, 0));
    await writer.writeTensor("b", ramp(12, 1, 100));
    await writer.writeTensor("big", ramp(25, 1, 200));
    await writer.writeTensor("c", ramp(2, 1, 300));
    await writer.writeTensor("d", ramp(2, 1, 400));
    return writer;
  }

  it("splits at maxShardBytes and writes an index", async () => {
    await withTempDir(async (directory) => {
      const writer = await writeSharded(directory);
      const result = await writer.close();
      // Greedy in plan order: [a], [b] (a + b would pass 64 bytes), [big] (alone, above the limit), [c, d].
      const shards = [1, 2, 3, 4].map((i) => `model-0000${i}-of-00004.safetensors`);
      expect(result).toEqual({
        files: [...shards, "model.safetensors.index.json"],
        totalSize: 4 * 53,
      });
      expect((await readdir(directory)).sort()).toEqual(
        [...shards, "model.safetensors.index.json"].sort(),
      );

      const index = JSON.parse(
        await readFile(join(directory, "model.safetensors.index.json"), "utf8"),
      );
      expect(index).toEqual({
        metadata: { total_size: 212 },
        weight_map: { a: shards[0], b: shards[1], big: shards[2], c: shards[3], d: shards[3] },
      });

      const checkpoint = await openCheckpoint(directory);
      try {
        expect(checkpoint.tensors.map((t) => [t.name, t.shard])).toEqual([
          ["a", shards[0]],
          ["b", shards[1]],
          ["big", shards[2]],
          ["c", shards[3]],
          ["d", shards[3]],
        ]);
        expect(Array.from(await checkpoint.readTensorFloat32("b"))).toEqual(
          Array.from(ramp(12, 1, 100)),
        );
        expect(Array.from(await checkpoint.readTensorFloat32("d"))).toEqual([400, 401]);
      } finally {
        await checkpoint.close();
      }
    });
  });

  it("abort removes temporary files", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({ directory, tensors, maxShardBytes: 64 });
      await writer.writeTensor("a", ramp(12));
      await writer.writeTensor("b", ramp(12));
      const partial = await readdir(directory);
      expect(partial).toHaveLength(2);
      for (const name of partial)
        expect(name).toMatch(/^\.model-0000[12]-of-00004\.safetensors\.\d+\.[0-9a-f]+\.tmp$/);

      await writer.abort();
      expect(await readdir(directory)).toEqual([]);
      await expectCheckpointError(writer.writeTensor("big", ramp(25)), "WRITER_CLOSED");
    });
  });

  it("abort after close keeps the output", async () => {
    await withTempDir(async (directory) => {
      const writer = await writeSharded(directory);
      await writer.close();
      await writer.abort();
      expect(await readdir(directory)).toHaveLength(5);
    });
  });

  it("single shard needs no index", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({
        directory,
        tensors: tensors.slice(3),
        maxShardBytes: 1000,
      });
      await writer.writeTensor("c", ramp(2));
      await writer.writeTensor("d", ramp(2));
      expect((await writer.close()).files).toEqual(["model.safetensors"]);
    });
  });
});

describe("SafetensorsWriter contract", () => {
  it("rejects tensors out of plan order", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({ directory, tensors: PLAN });
      const error = await expectCheckpointError(
        writer.writeTensor("h", Buffer.alloc(8)),
        "WRITE_OUT_OF_ORDER",
      );
      expect(error.status).toBe(500);
      expect(error.message).toContain('received tensor "h" but the plan expects tensor "w"');
      await writePlan(writer);
      await expectCheckpointError(
        writer.writeTensor("extra", Buffer.alloc(0)),
        "WRITE_OUT_OF_ORDER",
      );
      await writer.close();
    });
  });

  it("rejects a wrong byte length", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({ directory, tensors: PLAN });
      const error = await expectCheckpointError(
        writer.writeTensor("w", new Float32Array(5)),
        "WRITE_SIZE_MISMATCH",
      );
      expect(error.message).toContain("received 20 bytes but shape [2, 3] x F32 needs 24");
      // The rejected call changed nothing, so the right bytes are still accepted.
      await writePlan(writer);
      await writer.close();
    });
  });

  it("rejects a typed array of another element type", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({
        directory,
        tensors: [{ name: "h", dtype: "F16", shape: [4] }],
      });
      const error = await expectCheckpointError(
        writer.writeTensor("h", new Float32Array(2)),
        "WRITE_DTYPE_MISMATCH",
      );
      expect(error.message).toContain("planned as F16 but received a Float32Array");
      await writer.writeTensor("h", new Uint16Array([0x3c00, 0, 0, 0]));
      await writer.close();
    });
  });

  it("rejects a write while another is in flight", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({ directory, tensors: PLAN });
      const first = writer.writeTensor("w", ramp(6));
      await expectCheckpointError(writer.writeTensor("h", Buffer.alloc(8)), "WRITER_BUSY");
      await first;
      await writer.abort();
    });
  });

  it("rejects close before all writes", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({ directory, tensors: PLAN });
      await writer.writeTensor("w", ramp(6));
      const error = await expectCheckpointError(writer.close(), "WRITE_INCOMPLETE");
      expect(error.message).toContain('4 of 5 planned tensors are not written, next is "h"');
      await writer.abort();
      expect(await readdir(directory)).toEqual([]);
    });
  });

  it("rejects close during close", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({ directory, tensors: [] });
      const first = writer.close();
      await expectCheckpointError(writer.close(), "WRITER_BUSY");
      expect((await first).files).toEqual(["model.safetensors"]);
    });
  });

  it("abort during close removes output", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({ directory, tensors: [] });
      // Catch at once, because close() rejects while abort() is still running.
      const closing = writer.close().catch((error: unknown) => error);
      await writer.abort();
      expect(await closing).toMatchObject({ code: "WRITER_CLOSED" });
      expect(await readdir(directory)).toEqual([]);
    });
  });

  it("rejects use after close", async () => {
    await withTempDir(async (directory) => {
      const writer = await createSafetensorsWriter({ directory, tensors: [] });
      await writer.close();
      await expectCheckpointError(writer.close(), "WRITER_CLOSED");
    });
  });

  it("replaces existing file on close", async () => {
    await withTempDir(async (directory) => {
      await writeFile(join(directory, "model.safetensors"), "old");
      const writer = await createSafetensorsWriter({
        directory,
        tensors: [{ name: "x", dtype: "U8", shape: [1] }],
      });
      await writer.writeTensor("x", Buffer.from([5]));
      expect(await readFile(join(directory, "model.safetensors"), "utf8")).toBe("old");
      await writer.close();
      const bytes = await readFile(join(directory, "model.safetensors"));
      expect(bytes[bytes.length - 1]).toBe(5);
    });
  });

  it.each([
    ["a duplicate name", [PLAN[0], PLAN[0]], "planned twice"],
    ["an unknown dtype", [{ name: "x", dtype: "F128", shape: [1] }], 'unknown dtype "F128"'],
    [
      "a negative dimension",
      [{ name: "x", dtype: "F32", shape: [-1] }],
      "dimensions must be safe integers >= 0",
    ],
    ["the reserved name", [{ name: "__metadata__", dtype: "F32", shape: [1] }], "reserved"],
    ["an unsafe name", [{ name: "__proto__", dtype: "F32", shape: [1] }], "__proto__"],
    ["an empty name", [{ name: "", dtype: "F32", shape: [1] }], "is empty"],
  ])("rejects a plan with %s", async (_kind, tensors, text) => {
    const error = await expectCheckpointError(
      () => SafetensorsWriter.create({ directory: "/nonexistent", tensors }),
      "INVALID_PLAN",
    );
    expect(error.message).toContain(text);
  });

  it("rejects bad metadata and shard size", async () => {
    const metadata = { step: 5 } as unknown as Record<string, string>;
    await expectCheckpointError(
      () => SafetensorsWriter.create({ directory: ".", tensors: [], metadata }),
      "INVALID_PLAN",
    );
    await expectCheckpointError(
      () => SafetensorsWriter.create({ directory: ".", tensors: [], maxShardBytes: 0 }),
      "INVALID_PLAN",
    );
  });

  it("rejects a missing output directory", async () => {
    await withTempDir(async (directory) => {
      await expect(
        createSafetensorsWriter({ directory: join(directory, "missing"), tensors: [] }),
      ).rejects.toThrow("ENOENT");
    });
  });
});
