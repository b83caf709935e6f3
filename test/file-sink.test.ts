import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BATCH_BYTES, FileSink, SYNC_EVERY_BYTES } from "../src/storage/file-sink.ts";

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), "pifa-file-sink-"));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** Splits `bytes` into chunks of uneven sizes, as a socket delivers them. */
function chunked(bytes: Buffer, sizes: number[]): Readable {
  const chunks: Buffer[] = [];
  let offset = 0;
  for (let i = 0; offset < bytes.length; i++) {
    const size = sizes[i % sizes.length];
    chunks.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return Readable.from(chunks);
}

describe("FileSink", () => {
  it("writes across batches and syncs", async () => {
    // Past one background sync, ending in a partial batch, in chunks that straddle batches.
    const bytes = randomBytes(SYNC_EVERY_BYTES + BATCH_BYTES * 2 + BATCH_BYTES / 2 + 17);
    const file = path.join(directory, "body.bin");
    const sink = new FileSink(file);
    await pipeline(chunked(bytes, [65_536, 1, 1_000_003, 4096]), sink);

    expect(sink.size).toBe(bytes.length);
    expect((await readFile(file)).equals(bytes)).toBe(true);
  });

  it("writes an empty body as an empty file", async () => {
    const file = path.join(directory, "empty.bin");
    const sink = new FileSink(file);
    await pipeline(Readable.from([]), sink);

    expect(sink.size).toBe(0);
    expect((await readFile(file)).length).toBe(0);
  });

  it("keeps concurrent files apart", async () => {
    const bodies = Array.from({ length: 6 }, (_, i) => randomBytes(3_000_000 * (i + 1)));
    const sinks = bodies.map((_, i) => new FileSink(path.join(directory, `${i}.bin`)));
    await Promise.all(bodies.map((body, i) => pipeline(chunked(body, [70_000]), sinks[i])));

    for (const [i, body] of bodies.entries()) {
      expect(sinks[i].size).toBe(body.length);
      expect((await readFile(path.join(directory, `${i}.bin`))).equals(body)).toBe(true);
    }
  });

  it("reports ENOENT for a missing directory", async () => {
    const sink = new FileSink(path.join(directory, "missing", "body.bin"));
    const failure = await pipeline(Readable.from([Buffer.from("x")]), sink).catch((e) => e);

    expect(failure).toBeInstanceOf(Error);
    expect(failure.code).toBe("ENOENT");
  });

  it.runIf(process.platform === "linux")("reports ENOSPC on a full disk", async () => {
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    const sink = new FileSink("/dev/full");
    const failure = await pipeline(Readable.from([randomBytes(BATCH_BYTES * 3)]), sink).catch(
      (e) => e,
    );

    expect(failure).toBeInstanceOf(Error);
    expect(failure.code).toBe("ENOSPC");
  });

  it("closes the file when the body fails", async () => {
    const sink = new FileSink(path.join(directory, "aborted.bin"));
    async function* failing() {
      yield randomBytes(BATCH_BYTES + 5);
      throw new Error("client went away");
    }
    await expect(pipeline(Readable.from(failing()), sink)).rejects.toThrow("client went away");
    if (!sink.closed) await new Promise((resolve) => sink.once("close", resolve));
    expect(sink.destroyed).toBe(true);
    expect(sink.closed).toBe(true);
  });
});
