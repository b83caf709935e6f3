/** Offline commands on local files: `inspect`, `compress`, `expand`. */

import { mkdir, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import type { EvaluationReport } from "../../workers/pipeline/report.ts";
import { FileByteSource } from "../checkpoint/byte-source.ts";
import { type Checkpoint, openCheckpoint } from "../checkpoint/checkpoint.ts";
import { isCheckpointError } from "../checkpoint/errors.ts";
import { METHODS, OUTPUT_DTYPES, parseCompressionOptions } from "../compression/options.ts";
import { createProgress } from "./progress.ts";

/** Opens a checkpoint directory, or a single `.safetensors` file as a one-file checkpoint. */
export async function openLocalCheckpoint(
  target: string,
): Promise<{ checkpoint: Checkpoint; dir: string }> {
  const info = await stat(target);
  if (info.isDirectory()) return { checkpoint: await openCheckpoint(target), dir: target };
  const source = await FileByteSource.open(target);
  try {
    const checkpoint = await openCheckpoint([{ name: "model.safetensors", source }]);
    // The checkpoint does not own caller-provided sources: close ours with it.
    const close = checkpoint.close.bind(checkpoint);
    checkpoint.close = async () => {
      await close();
      await source.close();
    };
    return { checkpoint, dir: path.dirname(target) };
  } catch (error) {
    await source.close();
    throw error;
  }
}

function parseNumber(name: string) {
  return (value: string) => {
    const parsed = Number(value);
    if (value.trim() === "" || !Number.isFinite(parsed)) {
      throw new InvalidArgumentError(`${name} must be a number, got "${value}"`);
    }
    return parsed;
  };
}

/** CLI flag of each option field, so errors name what the user typed. */
const OPTION_FLAGS: Record<string, string> = {
  "options.method": "--method",
  "options.density": "--density",
  "options.rankMultiple": "--rank-multiple",
  "options.targets": "--targets",
  "options.exclude": "--exclude",
  "options.dtype": "--dtype",
  "options.shardBytes": "--shard-size",
  "options.lambda": "--lambda",
  "options.steps": "--steps",
  "options.ridge": "--ridge",
  "options.calibrationSequences": "--sequences",
  "options.sequenceLength": "--sequence-length",
};

/** Node's file-system errors (`ENOENT`, `EEXIST`...) carry `syscall` and `path`. */
function describeSystemError(error: NodeJS.ErrnoException): { code: string; message: string } {
  const reasons: Record<string, string> = {
    ENOENT: "does not exist",
    EEXIST: "already exists and is not a directory",
    EACCES: "is not accessible with this user's permissions",
    ENOTDIR: "has a file where a directory is expected",
    EISDIR: "is a directory where a file is expected",
  };
  const reason = reasons[error.code ?? ""] ?? `failed (${error.code})`;
  return {
    code: error.code ?? "SYSTEM_ERROR",
    message: `${error.path ?? "path"} ${reason}: check the path`,
  };
}

/** Prints a failure the way scripts expect: the error code first, exit status 1. */
function fail(error: unknown, json: boolean): never {
  if (isCheckpointError(error) || (error instanceof Error && "code" in error)) {
    const system = error as NodeJS.ErrnoException;
    const { code, message } =
      typeof system.syscall === "string"
        ? describeSystemError(system)
        : (error as Error & { code: string });
    if (json) process.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
    else process.stderr.write(`error ${code}: ${message}\n`);
    process.exit(1);
  }
  throw error;
}

/** Creates `dir` and returns a cleanup that removes it again if this run created it. */
async function prepareOutput(dir: string): Promise<() => Promise<void>> {
  const existed = await stat(dir).then(
    () => true,
    () => false,
  );
  await mkdir(dir, { recursive: true });
  return async () => {
    if (!existed) await rm(dir, { recursive: true, force: true });
  };
}

function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

async function inspect(target: string, flags: { json?: boolean }): Promise<void> {
  const json = flags.json ?? false;
  let checkpoint: Checkpoint;
  try {
    ({ checkpoint } = await openLocalCheckpoint(target));
  } catch (error) {
    fail(error, json);
  }
  const tensors = checkpoint.tensors.map((t) => ({
    name: t.name,
    dtype: t.dtype,
    shape: [...t.shape],
    bytes: t.byteLength,
    shard: t.shard,
  }));
  await checkpoint.close();
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ shards: [...checkpoint.shards.keys()], tensors }, null, 2)}\n`,
    );
    return;
  }
  const width = Math.max(4, ...tensors.map((t) => t.name.length));
  process.stdout.write(`${"name".padEnd(width)}  dtype  ${"shape".padEnd(16)} bytes\n`);
  for (const t of tensors) {
    process.stdout.write(
      `${t.name.padEnd(width)}  ${t.dtype.padEnd(5)}  ${`[${t.shape.join(", ")}]`.padEnd(16)} ${t.bytes}\n`,
    );
  }
  const total = tensors.reduce((sum, t) => sum + t.bytes, 0);
  process.stdout.write(`${tensors.length} tensors, ${formatBytes(total)}\n`);
}

interface CompressFlags {
  out: string;
  method: string;
  density: number;
  rankMultiple?: number;
  targets?: string[];
  exclude?: string[];
  dtype: string;
  shardSize?: number;
  calibration?: string;
  eval?: string;
  lambda?: number;
  steps?: number;
  ridge?: number;
  sequences?: number;
  sequenceLength?: number;
  json?: boolean;
}

/** Reads calibration and evaluation token files against the model's limits. */
async function readCompressionData(flags: CompressFlags, dir: string, config: Buffer | undefined) {
  if (flags.calibration === undefined && flags.eval === undefined) return {};
  const { specFromConfig } = await import("../../workers/pipeline/compress.ts");
  const { tokenLimits } = await import("../model/index.ts");
  const { readTokenFile } = await import("./eval.ts");
  const spec = specFromConfig(config, "to read --calibration or --eval token data");
  const selection = { sequences: flags.sequences, sequenceLength: flags.sequenceLength };
  const calibration =
    flags.calibration === undefined
      ? undefined
      : await readTokenFile(flags.calibration, "calibration", dir, tokenLimits(spec), selection);
  const evaluation =
    flags.eval === undefined
      ? undefined
      : await readTokenFile(flags.eval, "evaluation", dir, tokenLimits(spec, 2), {
          sequenceLength: flags.sequenceLength,
        });
  return { calibration, evaluation };
}

async function compress(source: string, flags: CompressFlags): Promise<void> {
  const json = flags.json ?? false;
  const parsed = parseCompressionOptions({
    method: flags.method,
    density: flags.density,
    rankMultiple: flags.rankMultiple,
    targets: flags.targets,
    exclude: flags.exclude,
    dtype: flags.dtype,
    shardBytes: flags.shardSize,
    lambda: flags.lambda,
    steps: flags.steps,
    ridge: flags.ridge,
    calibrationSequences: flags.sequences,
    sequenceLength: flags.sequenceLength,
  });
  if (!parsed.ok) {
    fail(
      Object.assign(
        new Error(
          `${OPTION_FLAGS[parsed.issue.field] ?? parsed.issue.field}: ${parsed.issue.message}`,
        ),
        {
          code: "INVALID_OPTIONS",
        },
      ),
      json,
    );
  }
  // Loaded here so inspect and expand work even where the BLAS addon is missing.
  const { compressCheckpoint } = await import("../../workers/pipeline/compress.ts");
  const progress = createProgress(process.stderr, !json);
  let removeOutput: (() => Promise<void>) | undefined;
  try {
    const { checkpoint, dir } = await openLocalCheckpoint(source);
    const configPath = path.join(dir, "config.json");
    const config = (await stat(configPath).catch(() => undefined))
      ? await readFile(configPath)
      : undefined;
    const data = await readCompressionData(flags, dir, config).catch(async (error) => {
      await checkpoint.close();
      throw error;
    });
    removeOutput = await prepareOutput(flags.out);
    const result = await compressCheckpoint({
      checkpoint,
      config,
      options: parsed.options,
      ...data,
      outDir: flags.out,
      onProgress: (p) => progress.update(p.layersDone, p.layersTotal, p.layer ?? p.stage),
    }).finally(() => checkpoint.close());
    progress.finish();
    const { totals } = result.report;
    if (json) {
      process.stdout.write(
        `${JSON.stringify({ out: flags.out, files: result.files, totals }, null, 2)}\n`,
      );
      return;
    }
    const worst = Math.max(...result.report.layers.map((l) => l.relative_error));
    process.stdout.write(
      `compressed ${totals.layers} layers with ${parsed.options.method} in ${totals.seconds.toFixed(1)} s: ` +
        `density ${totals.density.toFixed(4)}, ${formatBytes(totals.bytes_before)} -> ${formatBytes(totals.bytes_after)}, ` +
        `worst relative error ${worst.toExponential(3)}\n${perplexityLine(result.report)}wrote ${result.files.join(", ")} to ${flags.out}\n`,
    );
  } catch (error) {
    progress.finish();
    await removeOutput?.();
    fail(error, json);
  }
}

function perplexityLine(report: { evaluation?: EvaluationReport }): string {
  const evaluation = report.evaluation;
  if (!evaluation) return "";
  return `perplexity on ${evaluation.tokens} tokens: original ${evaluation.original.perplexity.toFixed(3)}, compressed ${evaluation.compressed.perplexity.toFixed(3)}\n`;
}

async function expand(
  artifact: string,
  flags: { out: string; shardSize?: number; json?: boolean },
) {
  const json = flags.json ?? false;
  const { expandArtifact } = await import("../../workers/pipeline/expand.ts");
  try {
    const { checkpoint, dir } = await openLocalCheckpoint(artifact);
    await mkdir(flags.out, { recursive: true });
    const files = await expandArtifact({
      artifact: checkpoint,
      artifactDir: dir,
      outDir: flags.out,
      maxShardBytes: flags.shardSize,
    }).finally(() => checkpoint.close());
    if (json) process.stdout.write(`${JSON.stringify({ out: flags.out, files })}\n`);
    else process.stdout.write(`wrote ${files.join(", ")} to ${flags.out}\n`);
  } catch (error) {
    fail(error, json);
  }
}

export function registerOfflineCommands(program: Command): void {
  program
    .command("inspect")
    .description("validate a safetensors file or checkpoint directory and list its tensors")
    .argument("<path>", "model.safetensors, a shard index, or a checkpoint directory")
    .option("--json", "print JSON instead of a table")
    .action(inspect);

  program
    .command("compress")
    .description("compress a local checkpoint")
    .argument(
      "<source>",
      "checkpoint directory (config.json beside model.safetensors or shards) or a .safetensors file",
    )
    .requiredOption("--out <dir>", "output directory for the artifact")
    .addOption(
      new Option("--method <method>", "compression method").choices(METHODS).default("pifa"),
    )
    .requiredOption(
      "--density <d>",
      "target density of the compressed layers, in (0, 1]",
      parseNumber("--density"),
    )
    .option(
      "--rank-multiple <k>",
      "round ranks down to a multiple of k",
      parseNumber("--rank-multiple"),
    )
    .option(
      "--targets <glob...>",
      "tensor name globs to compress instead of the default LLaMA projections",
    )
    .option("--exclude <glob...>", "tensor name globs to leave dense")
    .addOption(
      new Option("--dtype <dtype>", "dtype of the compressed tensors")
        .choices(OUTPUT_DTYPES)
        .default("same"),
    )
    .option(
      "--shard-size <bytes>",
      "split the output into shards of at most this many bytes",
      parseNumber("--shard-size"),
    )
    .option(
      "--calibration <file>",
      "calibration tokens for svd-llm, m and mpifa: token-id JSON, or text with --sequence-length",
    )
    .option("--eval <file>", "held-out tokens; the report then compares perplexities")
    .option("--sequences <n>", "use the first n calibration sequences", parseNumber("--sequences"))
    .option(
      "--sequence-length <n>",
      "truncate (JSON) or cut (text) sequences to n tokens",
      parseNumber("--sequence-length"),
    )
    .option(
      "--lambda <l>",
      "M: weight of the original outputs in the targets (default 0.25)",
      parseNumber("--lambda"),
    )
    .option("--steps <s>", "M: alternating A/B refit rounds (default 2)", parseNumber("--steps"))
    .option("--ridge <mu>", "M: ridge added in the B step (default 0.001)", parseNumber("--ridge"))
    .option("--json", "print the result as JSON, without a progress bar")
    .action(compress);

  program
    .command("expand")
    .description("rebuild an ordinary dense checkpoint from a compressed artifact")
    .argument("<artifact>", "artifact directory or its model.safetensors")
    .requiredOption("--out <dir>", "output directory for the dense checkpoint")
    .option(
      "--shard-size <bytes>",
      "split the output into shards of at most this many bytes",
      parseNumber("--shard-size"),
    )
    .option("--json", "print the result as JSON")
    .action(expand);
}
