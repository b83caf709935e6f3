import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const PIFA = path.resolve("bin/pifa.js");
const FIXTURE = path.resolve("test/fixtures/stories260K");

async function pifa(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [PIFA, ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

let work: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "pifa-cli-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("pifa CLI", () => {
  it("inspect lists the fixture's tensors as JSON", async () => {
    const { code, stdout } = await pifa("inspect", FIXTURE, "--json");
    expect(code).toBe(0);
    const listing = JSON.parse(stdout);
    expect(listing.tensors).toHaveLength(47);
    expect(listing.tensors[0]).toMatchObject({ dtype: "F32" });
    const embed = listing.tensors.find(
      (t: { name: string }) => t.name === "model.embed_tokens.weight",
    );
    expect(embed).toMatchObject({ shape: [512, 64], bytes: 512 * 64 * 4 });
  });

  it("inspect exits 1 with the error code on a malformed file", async () => {
    const bad = path.join(work, "bad.safetensors");
    const header = Buffer.from('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}');
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    await writeFile(bad, Buffer.concat([length, header, Buffer.alloc(4)]));
    const { code, stderr } = await pifa("inspect", bad);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^error SIZE_MISMATCH: /);
  });

  it("compress, expand and inspect round-trip the fixture", async () => {
    const out = path.join(work, "artifact");
    const compressed = await pifa(
      "compress",
      FIXTURE,
      "--out",
      out,
      "--method",
      "pifa",
      "--density",
      "0.5",
      "--json",
    );
    expect(compressed.code).toBe(0);
    const result = JSON.parse(compressed.stdout);
    expect(result.files).toEqual(["model.safetensors", "config.json", "report.json"]);
    expect(result.totals.density).toBeLessThanOrEqual(0.5);
    const report = JSON.parse(await readFile(path.join(out, "report.json"), "utf8"));
    expect(report.layers).toHaveLength(35);

    const dense = path.join(work, "dense");
    expect((await pifa("expand", out, "--out", dense)).code).toBe(0);
    const listing = JSON.parse((await pifa("inspect", dense, "--json")).stdout);
    const source = JSON.parse((await pifa("inspect", FIXTURE, "--json")).stdout);
    expect(
      listing.tensors.map((t: { name: string; shape: number[] }) => [t.name, t.shape]),
    ).toEqual(source.tensors.map((t: { name: string; shape: number[] }) => [t.name, t.shape]));
  });

  it("compress rejects a density out of range naming the option", async () => {
    const { code, stderr } = await pifa(
      "compress",
      FIXTURE,
      "--out",
      path.join(work, "x"),
      "--density",
      "1.5",
    );
    expect(code).toBe(1);
    expect(stderr).toContain("--density: density must be at most 1");
  });

  it("compress rejects a non-numeric density", async () => {
    const { code, stderr } = await pifa(
      "compress",
      FIXTURE,
      "--out",
      path.join(work, "x"),
      "--density",
      "half",
    );
    expect(code).not.toBe(0);
    expect(stderr).toContain("--density must be a number");
  });

  it("compress names a missing source path", async () => {
    const { code, stderr } = await pifa(
      "compress",
      path.join(work, "absent"),
      "--out",
      path.join(work, "y"),
      "--density",
      "0.5",
    );
    expect(code).toBe(1);
    expect(stderr).toMatch(/^error ENOENT: .*absent does not exist/);
  });

  it("failed compress leaves no output directory", async () => {
    const out = path.join(work, "never");
    const { code, stderr } = await pifa(
      "compress",
      FIXTURE,
      "--out",
      out,
      "--density",
      "0.5",
      "--targets",
      "nothing.*",
    );
    expect(code).toBe(1);
    expect(stderr).toContain("NO_TARGETS");
    await expect(readFile(path.join(out, "report.json"))).rejects.toThrow();
    await expect(import("node:fs/promises").then((fs) => fs.stat(out))).rejects.toThrow(/ENOENT/);
  });

  it("prints its version", async () => {
    const { code, stdout } = await pifa("--version");
    expect(code).toBe(0);
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});
