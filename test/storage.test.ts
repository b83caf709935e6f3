import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { HeadObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  byteSource,
  type CreateStorageOptions,
  createS3Client,
  createStorage,
  type Storage,
  StorageError,
} from "../src/storage/index.ts";
import { startS3, type TestS3 } from "./helpers/s3.ts";

const MiB = 1024 * 1024;
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** Yields `totalBytes` of xorshift32 output in 64 KiB chunks, so large bodies never sit in memory whole. */
function* pseudoRandomChunks(totalBytes: number, seed: number): Generator<Buffer> {
  let state = seed >>> 0 || 1;
  for (let offset = 0; offset < totalBytes; offset += 64 * 1024) {
    const chunk = Buffer.allocUnsafe(Math.min(64 * 1024, totalBytes - offset));
    for (let i = 0; i < chunk.length; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      chunk[i] = state & 0xff;
    }
    yield chunk;
  }
}

function generatedBody(totalBytes: number, seed: number): Readable {
  return Readable.from(pseudoRandomChunks(totalBytes, seed), { objectMode: false });
}

function generatedSha256(totalBytes: number, seed: number): string {
  const hash = createHash("sha256");
  for (const chunk of pseudoRandomChunks(totalBytes, seed)) {
    hash.update(chunk);
  }
  return hash.digest("hex");
}

function bodyOf(data: string | Buffer): Readable {
  return Readable.from([Buffer.from(data)], { objectMode: false });
}

/** Creates a body that sends `bytesBeforeFailure` bytes and then fails, like a client that disconnects. */
function failingBody(bytesBeforeFailure: number): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(Buffer.alloc(bytesBeforeFailure, 7));
        return;
      }
      this.destroy(new Error("client disconnected"));
    },
  });
}

async function sha256Of(stream: Readable): Promise<{ size: number; sha256: string }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest("hex") };
}

async function textOf(stream: Readable): Promise<string> {
  return Buffer.concat(await stream.toArray()).toString("utf8");
}

/** Resolves with the `StorageError` that `promise` rejects with, failing the test if it resolves or rejects otherwise. */
async function storageErrorOf(promise: Promise<unknown>): Promise<StorageError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(StorageError);
  return error as StorageError;
}

async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(root, join(entry.parentPath, entry.name)));
}

async function s3KeysUnder(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((entry) => (entry.Key ?? "").slice(prefix.length));
}

interface StorageUnderTest {
  storage: Storage;
  /** Every stored key or file relative to the storage root, including the reserved `.pifa/` area that `list` hides. */
  rawKeys(): Promise<string[]>;
}

interface Backend {
  name: "local" | "s3";
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A new, empty storage of this kind. */
  create(options?: CreateStorageOptions): Promise<StorageUnderTest>;
  /** A storage of this kind whose backend cannot be used. */
  createUnusable(): Promise<Storage>;
}

function localBackend(): Backend {
  let base = "";
  return {
    name: "local",
    async start() {
      base = await mkdtemp(join(tmpdir(), "pifa-storage-"));
    },
    async stop() {
      await rm(base, { recursive: true, force: true });
    },
    async create() {
      const root = await mkdtemp(join(base, "root-"));
      return { storage: createStorage(pathToFileURL(root).href), rawKeys: () => filesUnder(root) };
    },
    async createUnusable() {
      const file = join(base, `file-${randomUUID()}`);
      await writeFile(file, "not a directory");
      return createStorage(pathToFileURL(join(file, "storage")).href);
    },
  };
}

function s3Backend(): Backend {
  let server: TestS3 | undefined;
  let client: S3Client | undefined;
  const running = () => {
    if (!server || !client) {
      throw new Error("S3 test server is not running");
    }
    return { server, client };
  };
  return {
    name: "s3",
    async start() {
      server = await startS3();
      client = createS3Client({ env: server.env });
    },
    async stop() {
      client?.destroy();
      await server?.stop();
    },
    async create(options = {}) {
      const { server, client } = running();
      const prefix = `store-${randomUUID()}`;
      // 5 MiB parts, S3's minimum, so that a few MiB already take the multipart path.
      const storage = createStorage(`s3://${server.bucket}/${prefix}`, {
        env: server.env,
        partSizeBytes: 5 * MiB,
        ...options,
      });
      return { storage, rawKeys: () => s3KeysUnder(client, server.bucket, `${prefix}/`) };
    },
    async createUnusable() {
      const { server } = running();
      return createStorage("s3://missing-bucket/store", { env: server.env });
    },
  };
}

describe.each([localBackend(), s3Backend()])("$name storage", (backend) => {
  beforeAll(() => backend.start());
  afterAll(() => backend.stop());

  it("put streams a multi-MiB body", async () => {
    const { storage } = await backend.create();
    const size = 12 * MiB + 123;

    const result = await storage.put("uploads/big.bin", generatedBody(size, 1));

    const expectedSha256 = generatedSha256(size, 1);
    expect(result.size).toBe(size);
    expect(result.sha256).toBe(expectedSha256);
    const stored = await sha256Of(await storage.get("uploads/big.bin"));
    expect(stored.size).toBe(size);
    expect(stored.sha256).toBe(expectedSha256);
    const info = await storage.head("uploads/big.bin");
    expect(info?.size).toBe(size);
    expect(info?.sha256).toBeUndefined();
    expect(info?.lastModified).toBeInstanceOf(Date);
  });

  it("put stores an empty body", async () => {
    const { storage } = await backend.create();

    const result = await storage.put("empty", bodyOf(""));

    expect(result).toEqual({ size: 0, sha256: EMPTY_SHA256 });
    expect((await storage.head("empty"))?.size).toBe(0);
    expect(await textOf(await storage.get("empty"))).toBe("");
    expect((await storage.read("empty", 0, 0)).length).toBe(0);
  });

  it("put replaces an existing object", async () => {
    const { storage } = await backend.create();
    await storage.put("a/b", bodyOf("first version"));

    await storage.put("a/b", bodyOf("second"));

    expect(await textOf(await storage.get("a/b"))).toBe("second");
    expect((await storage.head("a/b"))?.size).toBe(6);
  });

  it("put over maxBytes stores nothing", async () => {
    const { storage, rawKeys } = await backend.create();
    const body = generatedBody(12 * MiB, 2);

    const error = await storageErrorOf(
      storage.put("uploads/too-big.bin", body, { maxBytes: 6 * MiB }),
    );

    expect(error.code).toBe("TOO_LARGE");
    expect(error.status).toBe(413);
    expect(error.key).toBe("uploads/too-big.bin");
    expect(body.destroyed).toBe(false);
    expect(body.readableFlowing).toBe(false);
    expect(await storage.head("uploads/too-big.bin")).toBeUndefined();
    expect(await storage.list("")).toEqual([]);
    expect(await rawKeys()).toEqual([]);
    body.destroy();
  });

  it("put accepts a body of exactly maxBytes", async () => {
    const { storage } = await backend.create();

    const result = await storage.put("exact", bodyOf("12345"), { maxBytes: 5 });

    expect(result.size).toBe(5);
    expect(await textOf(await storage.get("exact"))).toBe("12345");
  });

  it("put with a failing body stores nothing", async () => {
    const { storage, rawKeys } = await backend.create();
    await storage.put("kept", bodyOf("old content"));

    const error = await storageErrorOf(storage.put("kept", failingBody(1000)));

    expect(error.code).toBe("BODY_ABORTED");
    expect(error.message).toContain("client disconnected");
    expect(await textOf(await storage.get("kept"))).toBe("old content");
    expect(await rawKeys()).toEqual(["kept"]);
  });

  it("get and read return byte ranges", async () => {
    const { storage } = await backend.create();
    const data = Buffer.concat([...pseudoRandomChunks(200_000, 3)]);
    await storage.put("ranges/data", bodyOf(data));

    const middle = Buffer.concat(
      await (await storage.get("ranges/data", { start: 1000, end: 1999 })).toArray(),
    );
    const clamped = Buffer.concat(
      await (await storage.get("ranges/data", { start: 199_990, end: 500_000 })).toArray(),
    );
    const read = await storage.read("ranges/data", 123_456, 4096);
    const source = byteSource(storage, "ranges/data", data.length);
    const sourced = await source.read(10, 20);

    expect(middle.equals(data.subarray(1000, 2000))).toBe(true);
    expect(clamped.equals(data.subarray(199_990))).toBe(true);
    expect(read.equals(data.subarray(123_456, 123_456 + 4096))).toBe(true);
    expect(source.size).toBe(200_000);
    expect(sourced.equals(data.subarray(10, 30))).toBe(true);
  });

  it("ranges outside the object are rejected", async () => {
    const { storage } = await backend.create();
    await storage.put("ranges/small", bodyOf("0123456789"));

    const cases = [
      () => storage.get("ranges/small", { start: 10, end: 20 }),
      () => storage.get("ranges/small", { start: 5, end: 4 }),
      () => storage.get("ranges/small", { start: -1, end: 4 }),
      () => storage.read("ranges/small", 8, 3),
      () => storage.read("ranges/small", 0.5, 3),
      () => byteSource(storage, "ranges/small", 10).read(9, 2),
    ];

    for (const attempt of cases) {
      const error = await storageErrorOf(attempt());
      expect(error.code).toBe("INVALID_RANGE");
      expect(error.status).toBe(416);
    }
  });

  it("publish stores the sha256 and no temporary object", async () => {
    const { storage, rawKeys } = await backend.create();
    const size = 6 * MiB + 5;

    const published = await storage.publish("jobs/1/model.bin", generatedBody(size, 4));

    const expectedSha256 = generatedSha256(size, 4);
    expect(published.key).toBe("jobs/1/model.bin");
    expect(published.size).toBe(size);
    expect(published.sha256).toBe(expectedSha256);
    expect((await storage.head("jobs/1/model.bin"))?.sha256).toBe(expectedSha256);
    expect((await sha256Of(await storage.get("jobs/1/model.bin"))).sha256).toBe(expectedSha256);
    expect(await storage.list("")).toEqual([
      expect.objectContaining({ key: "jobs/1/model.bin", size }),
    ]);
    expect((await rawKeys()).filter((key) => key.startsWith(".pifa/tmp/"))).toEqual([]);
  });

  it("failed publish keeps the previous object", async () => {
    const { storage, rawKeys } = await backend.create();
    const first = await storage.publish("jobs/2/model.bin", bodyOf("version one"));

    const error = await storageErrorOf(storage.publish("jobs/2/model.bin", failingBody(100)));

    expect(error.code).toBe("BODY_ABORTED");
    expect(await textOf(await storage.get("jobs/2/model.bin"))).toBe("version one");
    expect((await storage.head("jobs/2/model.bin"))?.sha256).toBe(first.sha256);
    expect((await rawKeys()).filter((key) => key.startsWith(".pifa/tmp/"))).toEqual([]);
  });

  it("put over a published object drops its sha256", async () => {
    const { storage } = await backend.create();
    await storage.publish("jobs/3/model.bin", bodyOf("published"));

    await storage.put("jobs/3/model.bin", bodyOf("overwritten"));

    // NOTE: s3rver can answer a HEAD with a stale size (0 was seen) after an
    // overwrite when the machine is loaded, once in a full suite run;
    // S3 itself is read-after-write consistent. Poll briefly for the new size.
    let info = await storage.head("jobs/3/model.bin");
    for (let attempt = 0; attempt < 20 && info?.size !== 11; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      info = await storage.head("jobs/3/model.bin");
    }
    expect(info?.size).toBe(11);
    expect(info?.sha256).toBeUndefined();
  });

  it("list matches string prefixes in key order", async () => {
    const { storage } = await backend.create();
    for (const key of ["jobs/1/b/c", "jobs/1/a", "jobs/10/x", "other/y", "jobs-archive"]) {
      await storage.put(key, bodyOf(key));
    }

    const keysOf = async (prefix: string) =>
      (await storage.list(prefix)).map((object) => object.key);

    expect(await keysOf("")).toEqual([
      "jobs-archive",
      "jobs/1/a",
      "jobs/1/b/c",
      "jobs/10/x",
      "other/y",
    ]);
    expect(await keysOf("jobs/1/")).toEqual(["jobs/1/a", "jobs/1/b/c"]);
    expect(await keysOf("jobs/1")).toEqual(["jobs/1/a", "jobs/1/b/c", "jobs/10/x"]);
    expect(await keysOf("jobs")).toEqual(["jobs-archive", "jobs/1/a", "jobs/1/b/c", "jobs/10/x"]);
    expect(await keysOf("missing/")).toEqual([]);
    const [first] = await storage.list("jobs/1/a");
    expect(first?.size).toBe("jobs/1/a".length);
    expect(first?.lastModified).toBeInstanceOf(Date);
  });

  it("delete removes one object", async () => {
    const { storage } = await backend.create();
    await storage.put("d/one", bodyOf("1"));
    await storage.put("d/two", bodyOf("2"));

    await storage.delete("d/one");
    await storage.delete("d/one");
    await storage.delete("never/stored");

    expect(await storage.head("d/one")).toBeUndefined();
    expect((await storage.list("d/")).map((object) => object.key)).toEqual(["d/two"]);
  });

  it("deletePrefix deletes matching objects only", async () => {
    const { storage, rawKeys } = await backend.create();
    for (const key of ["jobs/7/a", "jobs/7/b/c", "jobs/70/x", "jobs/8/a"]) {
      await storage.put(key, bodyOf(key));
    }
    await storage.publish("jobs/7/artifact", bodyOf("artifact"));

    const deleted = await storage.deletePrefix("jobs/7/");

    expect(deleted).toBe(3);
    expect((await storage.list("")).map((object) => object.key)).toEqual(["jobs/70/x", "jobs/8/a"]);
    expect((await rawKeys()).filter((key) => key.includes("jobs/7/"))).toEqual([]);
    expect(await storage.deletePrefix("jobs/7/")).toBe(0);
    expect((await storageErrorOf(storage.deletePrefix(""))).code).toBe("INVALID_KEY");
  });

  it("missing objects are NOT_FOUND", async () => {
    const { storage } = await backend.create();
    await storage.put("present/file", bodyOf("x"));

    expect(await storage.head("absent")).toBeUndefined();
    expect(await storage.head("present")).toBeUndefined();
    for (const attempt of [
      () => storage.get("absent"),
      () => storage.get("absent", { start: 0, end: 1 }),
      () => storage.read("absent", 0, 1),
      () => storage.read("absent", 0, 0),
      () => storage.get("present"),
      () => storage.get("present/file/below"),
    ]) {
      const error = await storageErrorOf(attempt());
      expect(error.code).toBe("NOT_FOUND");
      expect(error.status).toBe(404);
    }
  });

  it("invalid keys are rejected", async () => {
    const { storage, rawKeys } = await backend.create();
    const keys = [
      "",
      "/abs",
      "../up",
      "a/../b",
      "a/./b",
      "a//b",
      "a/",
      "a\\b",
      "a\u0000b",
      "a\nb",
      ".pifa/tmp/x",
      "x".repeat(256),
    ];

    for (const key of keys) {
      const body = bodyOf("data");
      const error = await storageErrorOf(storage.put(key, body));
      expect(error.code, JSON.stringify(key)).toBe("INVALID_KEY");
      expect(error.status).toBe(400);
      expect((await storageErrorOf(storage.get(key))).code).toBe("INVALID_KEY");
      expect((await storageErrorOf(storage.head(key))).code).toBe("INVALID_KEY");
    }
    expect((await storageErrorOf(storage.list("../"))).code).toBe("INVALID_KEY");
    expect(await rawKeys()).toEqual([]);
  });

  it("ping checks the backend", async () => {
    const { storage } = await backend.create();
    const unusable = await backend.createUnusable();

    await expect(storage.ping()).resolves.toBeUndefined();
    const error = await storageErrorOf(unusable.ping());
    expect(error.code).toBe("UNAVAILABLE");
    expect(error.status).toBe(503);
  });
});

describe("local storage layout", () => {
  let base = "";
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), "pifa-storage-layout-"));
  });
  afterAll(() => rm(base, { recursive: true, force: true }));

  it("keys map to files under the root", async () => {
    const root = join(base, "keys");
    const storage = createStorage(pathToFileURL(root).href);

    await storage.put("jobs/5/input.bin", bodyOf("hello"));

    expect((await stat(join(root, "jobs", "5", "input.bin"))).size).toBe(5);
  });

  it("delete removes empty directories", async () => {
    const root = join(base, "prune");
    const storage = createStorage(pathToFileURL(root).href);
    await storage.put("jobs/6/a/b/c", bodyOf("c"));
    await storage.put("jobs/6/keep", bodyOf("k"));
    await storage.publish("other/z", bodyOf("z"));

    await storage.delete("jobs/6/a/b/c");
    await storage.deletePrefix("other/");

    expect((await readdir(join(root, "jobs", "6"))).sort()).toEqual(["keep"]);
    expect((await readdir(root)).sort()).toEqual([".pifa", "jobs"]);
    expect(await readdir(join(root, ".pifa", "meta"))).toEqual([]);
  });

  it("a key below an object is a CONFLICT", async () => {
    const storage = createStorage(pathToFileURL(join(base, "conflict")).href);
    await storage.put("model", bodyOf("file"));

    const error = await storageErrorOf(storage.put("model/part", bodyOf("below")));

    expect(error.code).toBe("CONFLICT");
    expect(await textOf(await storage.get("model"))).toBe("file");
  });
});

describe("s3 storage metadata", () => {
  let server: TestS3;
  beforeAll(async () => {
    server = await startS3();
  });
  afterAll(() => server.stop());

  it("publish writes sha256 as user metadata", async () => {
    const storage = createStorage(`s3://${server.bucket}/meta`, { env: server.env });
    const client = createS3Client({ env: server.env });

    const published = await storage.publish("a/b", bodyOf("content"));

    const head = await client.send(
      new HeadObjectCommand({ Bucket: server.bucket, Key: "meta/a/b" }),
    );
    expect(head.Metadata?.sha256).toBe(published.sha256);
    expect(published.sha256).toBe(createHash("sha256").update("content").digest("hex"));
    client.destroy();
  });

  it("unknown access key is UNAVAILABLE", async () => {
    const storage = createStorage(`s3://${server.bucket}/denied`, {
      env: { ...server.env, AWS_ACCESS_KEY_ID: "UNKNOWN" },
    });

    const pingError = await storageErrorOf(storage.ping());
    const putError = await storageErrorOf(storage.put("a", bodyOf("x")));

    expect(pingError.code).toBe("UNAVAILABLE");
    expect(putError.code).toBe("UNAVAILABLE");
    expect(putError.message).toContain("AWS_ACCESS_KEY_ID");
  });

  // NOTE: skipped because s3rver 3.7 fails a truncated ListObjectsV2 page with HTTP 500 on
  // Node.js 17+ (its continuation tokens use the DES cipher, which OpenSSL 3 disables). Enable
  // it once the tests run against an S3 server that pages.
  it.skip("list follows continuation tokens", async () => {
    const storage = createStorage(`s3://${server.bucket}/pages`, {
      env: server.env,
      listPageSize: 2,
    });
    for (const key of ["a", "b", "c", "d", "e"]) {
      await storage.put(key, bodyOf(key));
    }

    const keys = (await storage.list("")).map((object) => object.key);

    expect(keys).toEqual(["a", "b", "c", "d", "e"]);
  });
});

describe("createStorage", () => {
  it("selects the backend from the URL", () => {
    expect(createStorage("file:///var/lib/pifa/storage").kind).toBe("local");
    expect(createStorage("s3://my-bucket/some/prefix", { env: {} }).kind).toBe("s3");
    expect(createStorage("s3://my-bucket", { env: {} }).kind).toBe("s3");
  });

  it("rejects unusable URLs", () => {
    for (const url of [
      "http://127.0.0.1/x",
      "/var/lib/pifa",
      "s3://",
      "s3://UpperCase/x",
      "s3://ab",
      "s3://bucket/../x",
      "file://server/share",
    ]) {
      expect(() => createStorage(url, { env: {} }), url).toThrow(StorageError);
      try {
        createStorage(url, { env: {} });
      } catch (error) {
        expect((error as StorageError).code).toBe("INVALID_URL");
      }
    }
  });
});
