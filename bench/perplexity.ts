/**
 * Perplexity of every method on the stories260K fixture at the given
 * densities, with the fixture's 128 calibration sequences of 256 tokens and
 * its 57 held-out evaluation sequences. Prints a table and writes JSON.
 *
 * Usage: npm run bench:perplexity -- [--densities 0.5,0.7] [--methods svd,pifa,svd-llm,m,mpifa] [--json PATH]
 */

import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { openCheckpoint } from "../src/checkpoint/checkpoint.ts";
import { parseModelConfig } from "../src/checkpoint/config.ts";
import { parseCompressionOptions } from "../src/compression/options.ts";
import { parseTokenIdJson } from "../src/data/token-ids.ts";
import { modelSpecFromConfig, tokenLimits } from "../src/model/index.ts";
import { compressCheckpoint } from "../workers/pipeline/compress.ts";

const { values } = parseArgs({
  options: {
    densities: { type: "string", default: "0.5,0.7" },
    methods: { type: "string", default: "svd,pifa,svd-llm,m,mpifa" },
    json: { type: "string" },
  },
});
const densities = (values.densities ?? "").split(",").map(Number);
const methods = (values.methods ?? "").split(",");

const fixture = path.resolve("test/fixtures/stories260K");
const data = path.resolve("test/fixtures/tinystories");
const config = await readFile(path.join(fixture, "config.json"));
const spec = modelSpecFromConfig(parseModelConfig(config));
const calibration = parseTokenIdJson(
  await readFile(path.join(data, "calibration-stories260K.json")),
  tokenLimits(spec),
  "calibration",
);
const evaluation = parseTokenIdJson(
  await readFile(path.join(data, "eval-stories260K.json")),
  tokenLimits(spec, 2),
  "evaluation",
);
const checkpoint = await openCheckpoint(fixture);
const work = await mkdtemp(path.join(os.tmpdir(), "pifa-perplexity-"));

const rows = [];
try {
  for (const density of densities) {
    for (const method of methods) {
      const parsed = parseCompressionOptions({ method, density });
      if (!parsed.ok) throw new Error(`${parsed.issue.field}: ${parsed.issue.message}`);
      const { report } = await compressCheckpoint({
        checkpoint,
        config,
        options: parsed.options,
        calibration: method === "svd" || method === "pifa" ? undefined : calibration,
        evaluation,
        outDir: path.join(work, `${method}-${density}`),
      });
      const row = {
        method,
        density,
        achieved_density: report.totals.density,
        perplexity: report.evaluation?.compressed.perplexity,
        dense_perplexity: report.evaluation?.original.perplexity,
        seconds: report.totals.seconds,
      };
      rows.push(row);
      console.error(JSON.stringify(row));
    }
  }
} finally {
  await checkpoint.close();
  await rm(work, { recursive: true, force: true });
}

console.log("\nmethod    density  achieved  perplexity  seconds");
for (const row of rows) {
  console.log(
    `${row.method.padEnd(9)} ${String(row.density).padEnd(8)} ${row.achieved_density.toFixed(4).padEnd(9)} ${(row.perplexity ?? Number.NaN).toFixed(2).padStart(10)}  ${row.seconds.toFixed(1).padStart(7)}`,
  );
}
const out = values.json ?? path.join("bench", "results", "perplexity.json");
await mkdir(path.dirname(out), { recursive: true });
await writeFile(
  out,
  `${JSON.stringify({ date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), rows }, null, 2)}\n`,
);
console.error(`wrote ${out}`);
