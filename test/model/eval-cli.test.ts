import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluatePerplexity } from "../../src/model/evaluation.ts";
import { openModel } from "../../src/model/open.ts";
import { EVAL_FIXTURE, FIXTURE, readEvalFixture } from "./helpers.ts";

const run = promisify(execFile);
const ENTRY = path.resolve("test/model/eval-cli.ts");

async function pifaEval(...args: string[]) {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ["--import", "tsx", ENTRY, "eval", ...args],
      { timeout: 60_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

let work: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "pifa-eval-cli-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("pifa eval", () => {
  it("prints the same NLL as evaluatePerplexity", async () => {
    const { code, stdout } = await pifaEval(
      FIXTURE,
      "--eval",
      EVAL_FIXTURE,
      "--sequences",
      "3",
      "--json",
    );
    expect(code).toBe(0);
    const printed = JSON.parse(stdout);

    const sequences = (await readEvalFixture()).sequences.slice(0, 3);
    const { checkpoint, spec } = await openModel(FIXTURE);
    const expected = await evaluatePerplexity(checkpoint, spec, sequences);
    await checkpoint.close();
    expect(printed.sequences).toBe(3);
    expect(printed.tokens).toBe(expected.tokens);
    expect(printed.meanNll).toBeCloseTo(expected.meanNll, 9);
    expect(printed.perplexity).toBeCloseTo(expected.perplexity, 8);
  });

  it("truncates sequences and prints a summary line", async () => {
    const { code, stdout } = await pifaEval(
      FIXTURE,
      "--eval",
      EVAL_FIXTURE,
      "--sequences",
      "2",
      "--sequence-length",
      "50",
    );
    expect(code).toBe(0);
    expect(stdout).toMatch(
      /^mean NLL \d+\.\d{4} nats\/token, perplexity \d+\.\d{3} over 98 predicted tokens in 2 sequences/,
    );
  });

  it("tokenizes plain text with the model's tokenizer", async () => {
    const textFile = path.join(work, "stories.txt");
    const { texts } = await readEvalFixture();
    await writeFile(textFile, texts.slice(0, 4).join("\n\n"));
    const { code, stdout } = await pifaEval(
      FIXTURE,
      "--eval",
      textFile,
      "--sequence-length",
      "128",
      "--json",
    );
    expect(code).toBe(0);
    const printed = JSON.parse(stdout);
    expect(printed.tokens % 127).toBe(0);
    expect(printed.perplexity).toBeLessThan(10);
  });

  it("requires a sequence length for plain text", async () => {
    const textFile = path.join(work, "short.txt");
    await writeFile(textFile, "Once upon a time.");
    const { code, stderr } = await pifaEval(FIXTURE, "--eval", textFile);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^error INVALID_TOKENS: .*--sequence-length/);
  });

  it("names the bad token id", async () => {
    const file = path.join(work, "bad.json");
    await writeFile(
      file,
      JSON.stringify({
        sequences: [
          [1, 2, 3],
          [1, 600],
        ],
      }),
    );
    const { code, stderr } = await pifaEval(FIXTURE, "--eval", file);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^error INVALID_TOKENS: eval\.sequences\[1\]\[1\]: token id 600/);
  });

  it("rejects an unsupported architecture as JSON", async () => {
    const model = path.join(work, "gpt2");
    await mkdir(model);
    await copyFile(path.join(FIXTURE, "model.safetensors"), path.join(model, "model.safetensors"));
    const config = JSON.parse(await readFile(path.join(FIXTURE, "config.json"), "utf8"));
    config.architectures = ["GPT2LMHeadModel"];
    await writeFile(path.join(model, "config.json"), JSON.stringify(config));
    const { code, stdout } = await pifaEval(model, "--eval", EVAL_FIXTURE, "--json");
    expect(code).toBe(1);
    const { error } = JSON.parse(stdout);
    expect(error.code).toBe("UNSUPPORTED_ARCHITECTURE");
    expect(error.message).toContain("GPT2LMHeadModel");
  });

  it("rejects a non-integer --sequences", async () => {
    const { code, stderr } = await pifaEval(FIXTURE, "--eval", EVAL_FIXTURE, "--sequences", "2.5");
    expect(code).not.toBe(0);
    expect(stderr).toContain("--sequences must be an integer >= 1");
  });
});
