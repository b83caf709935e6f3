import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BufferByteSource } from "../../src/checkpoint/byte-source.ts";
import { openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import { assemble, expectCheckpointError, withTempDir } from "./helpers.ts";

const SHARD_1 = "model-00001-of-00002.safetensors";
const SHARD_2 = "model-00002-of-00002.safetensors";

/** Builds a safetensors file of 1-element F32 tensors whose values are 1, 2, 3, ... */
function shardBytes(names: string[], first = 1): Buffer {
  const header: Record<string, unknown> = {};
  names.forEach((name, i) => {
    header[name] = { dtype: "F32", shape: [1], data_offsets: [4 * i, 4 * i + 4] };
  });
  const values = new Float32Array(names.map((_, i) => first + i));
  return assemble(header, Buffer.from(values.buffer));
}

function indexJson(weightMap: Record<string, string>): string {
  return JSON.stringify({
    metadata: { total_size: 4 * Object.keys(weightMap).length },
    weight_map: weightMap,
  });
}

async function writeFiles(
  directory: string,
  files: Record<string, string | Buffer>,
): Promise<void> {
  for (const [name, content] of Object.entries(files))
    await writeFile(join(directory, name), content);
}

describe("openCheckpoint with shards", () => {
  it("merges shards listed by the index", async () => {
    await withTempDir(async (directory) => {
      await writeFiles(directory, {
        "model.safetensors.index.json": indexJson({ a: SHARD_1, b: SHARD_1, c: SHARD_2 }),
        [SHARD_1]: shardBytes(["a", "b"], 1),
        [SHARD_2]: shardBytes(["c"], 10),
        "unrelated.safetensors": shardBytes(["z"]),
      });
      const checkpoint = await openCheckpoint(directory);
      try {
        expect(checkpoint.tensors.map((t) => [t.name, t.shard])).toEqual([
          ["a", SHARD_1],
          ["b", SHARD_1],
          ["c", SHARD_2],
        ]);
        expect([...checkpoint.shards.keys()]).toEqual([SHARD_1, SHARD_2]);
        expect(checkpoint.index?.weightMap.get("c")).toBe(SHARD_2);
        expect(Array.from(await checkpoint.readTensorFloat32("b"))).toEqual([2]);
        expect(Array.from(await checkpoint.readTensorFloat32("c"))).toEqual([10]);
        expect(checkpoint.getTensor("z")).toBeUndefined();
      } finally {
        await checkpoint.close();
      }
    });
  });

  it("opens a list of named sources", async () => {
    const checkpoint = await openCheckpoint([
      {
        name: "model.safetensors.index.json",
        source: new BufferByteSource(Buffer.from(indexJson({ a: SHARD_1, c: SHARD_2 }))),
      },
      { name: SHARD_2, source: new BufferByteSource(shardBytes(["c"], 7)) },
      { name: SHARD_1, source: new BufferByteSource(shardBytes(["a"], 3)) },
    ]);
    expect(checkpoint.tensors.map((t) => t.name)).toEqual(["a", "c"]);
    expect(Array.from(await checkpoint.readTensorFloat32("c"))).toEqual([7]);
    await expect(checkpoint.readTensorBytes("missing")).rejects.toThrow(
      'tensor "missing" is not in this checkpoint',
    );
  });

  it("prefers model.safetensors over an index", async () => {
    await withTempDir(async (directory) => {
      await writeFiles(directory, {
        "model.safetensors": shardBytes(["single"]),
        "model.safetensors.index.json": "not even json",
      });
      const checkpoint = await openCheckpoint(directory);
      try {
        expect(checkpoint.tensors.map((t) => t.name)).toEqual(["single"]);
        expect(checkpoint.index).toBeUndefined();
      } finally {
        await checkpoint.close();
      }
    });
  });

  it("merges shard metadata", async () => {
    const withMetadata = assemble({
      __metadata__: { format: "pt", "lm_head.weight": "model.embed_tokens.weight" },
    });
    const checkpoint = await openCheckpoint([
      { name: "model.safetensors", source: new BufferByteSource(withMetadata) },
    ]);
    expect({ ...checkpoint.metadata }).toEqual({
      format: "pt",
      "lm_head.weight": "model.embed_tokens.weight",
    });
  });
});

describe("openCheckpoint errors", () => {
  it("directory without weights", async () => {
    await withTempDir(async (directory) => {
      await writeFile(join(directory, "config.json"), "{}");
      const error = await expectCheckpointError(openCheckpoint(directory), "MISSING_CHECKPOINT");
      expect(error.message).toContain(
        "found neither model.safetensors nor model.safetensors.index.json",
      );
    });
  });

  it("file list without weights", async () => {
    const error = await expectCheckpointError(
      openCheckpoint([
        { name: "pytorch_model.bin", source: new BufferByteSource(Buffer.alloc(4)) },
      ]),
      "MISSING_CHECKPOINT",
    );
    expect(error.message).toContain("files given: pytorch_model.bin");
  });

  it.each([
    ["not JSON", "{", "is not valid JSON"],
    ["an array", "[]", "is not a JSON object"],
    ["missing weight_map", '{"metadata":{}}', "has no weight_map object"],
    ["a non-string shard", '{"weight_map":{"a":1}}', 'maps tensor "a" to 1'],
    [
      "a non-object metadata",
      '{"metadata":[],"weight_map":{}}',
      "metadata field that is not an object",
    ],
  ])("index that is %s", async (_kind, text, message) => {
    await withTempDir(async (directory) => {
      await writeFile(join(directory, "model.safetensors.index.json"), text);
      const error = await expectCheckpointError(openCheckpoint(directory), "INVALID_INDEX");
      expect(error.message).toContain(message);
    });
  });

  it("index that is not UTF-8", async () => {
    const source = new BufferByteSource(Buffer.from([0x7b, 0xfe, 0x7d]));
    await expectCheckpointError(
      openCheckpoint([{ name: "model.safetensors.index.json", source }]),
      "INVALID_INDEX",
    );
  });

  it("tensor listed twice in index", async () => {
    const text = `{"weight_map":{"a":"${SHARD_1}","a":"${SHARD_2}"}}`;
    const source = new BufferByteSource(Buffer.from(text));
    const error = await expectCheckpointError(
      openCheckpoint([{ name: "model.safetensors.index.json", source }]),
      "DUPLICATE_KEY",
    );
    expect(error.message).toContain('repeats the key "a" inside "weight_map"');
  });

  it("index tensor named __proto__", async () => {
    const source = new BufferByteSource(Buffer.from(`{"weight_map":{"__proto__":"${SHARD_1}"}}`));
    await expectCheckpointError(
      openCheckpoint([{ name: "model.safetensors.index.json", source }]),
      "UNSAFE_NAME",
    );
  });

  it.each([
    "../model-00001-of-00001.safetensors",
    "/etc/passwd",
    "sub/model.safetensors",
    "..\\model.safetensors",
    "C:model.safetensors",
    "..",
    "",
    "model\u0000.safetensors",
  ])("unsafe shard name %j", async (shard) => {
    await withTempDir(async (directory) => {
      await writeFile(
        join(directory, "model.safetensors.index.json"),
        JSON.stringify({ weight_map: { a: shard } }),
      );
      const error = await expectCheckpointError(openCheckpoint(directory), "UNSAFE_SHARD_NAME");
      expect(error.message).toContain("must be plain file names");
    });
  });

  it("uploaded file name with path", async () => {
    await expectCheckpointError(
      openCheckpoint([
        { name: "../model.safetensors", source: new BufferByteSource(shardBytes(["a"])) },
      ]),
      "UNSAFE_SHARD_NAME",
    );
  });

  it("two uploads with one name", async () => {
    const source = new BufferByteSource(shardBytes(["a"]));
    const error = await expectCheckpointError(
      openCheckpoint([
        { name: "model.safetensors", source },
        { name: "model.safetensors", source },
      ]),
      "DUPLICATE_SHARD",
    );
    expect(error.message).toContain('"model.safetensors" twice');
  });

  it("indexed shard missing from directory", async () => {
    await withTempDir(async (directory) => {
      await writeFiles(directory, {
        "model.safetensors.index.json": indexJson({ a: SHARD_1, c: SHARD_2 }),
        [SHARD_1]: shardBytes(["a"]),
      });
      const error = await expectCheckpointError(openCheckpoint(directory), "MISSING_SHARD");
      expect(error.message).toContain(`lists shard "${SHARD_2}", which is missing`);
    });
  });

  it("indexed tensor absent from shard", async () => {
    await withTempDir(async (directory) => {
      await writeFiles(directory, {
        "model.safetensors.index.json": indexJson({ a: SHARD_1, b: SHARD_1, c: SHARD_2 }),
        [SHARD_1]: shardBytes(["a"]),
        [SHARD_2]: shardBytes(["c"]),
      });
      const error = await expectCheckpointError(openCheckpoint(directory), "TENSOR_NOT_IN_SHARD");
      expect(error.message).toContain(
        `places tensor "b" in "${SHARD_1}", but that shard does not contain it (no shard stores it)`,
      );
    });
  });

  it("tensor stored in unindexed shard", async () => {
    await withTempDir(async (directory) => {
      await writeFiles(directory, {
        "model.safetensors.index.json": indexJson({ a: SHARD_1, c: SHARD_1 }),
        [SHARD_1]: shardBytes(["a"]),
        [SHARD_2]: shardBytes(["c"]),
      });
      // SHARD_2 is not in the index, so it is never opened and c is simply absent.
      await expectCheckpointError(openCheckpoint(directory), "TENSOR_NOT_IN_SHARD");
    });
  });

  it("tensor stored in two shards", async () => {
    await withTempDir(async (directory) => {
      await writeFiles(directory, {
        "model.safetensors.index.json": indexJson({ a: SHARD_1, c: SHARD_2 }),
        [SHARD_1]: shardBytes(["a", "c"]),
        [SHARD_2]: shardBytes(["c"]),
      });
      const error = await expectCheckpointError(openCheckpoint(directory), "TENSOR_IN_TWO_SHARDS");
      expect(error.message).toContain(`tensor "c" is stored in both "${SHARD_1}" and "${SHARD_2}"`);
    });
  });

  it("shard tensor missing from index", async () => {
    await withTempDir(async (directory) => {
      await writeFiles(directory, {
        "model.safetensors.index.json": indexJson({ a: SHARD_1 }),
        [SHARD_1]: shardBytes(["a", "extra"]),
      });
      const error = await expectCheckpointError(openCheckpoint(directory), "UNINDEXED_TENSOR");
      expect(error.message).toContain(`shard "${SHARD_1}" contains tensor "extra"`);
    });
  });

  it("shard header error names shard", async () => {
    await withTempDir(async (directory) => {
      await writeFiles(directory, {
        "model.safetensors.index.json": indexJson({ a: SHARD_1 }),
        [SHARD_1]: assemble("[]"),
      });
      const error = await expectCheckpointError(openCheckpoint(directory), "HEADER_NOT_OBJECT");
      expect(error.message).toMatch(new RegExp(`^shard "${SHARD_1}": `));
    });
  });
});
