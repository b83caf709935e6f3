/** `pifa eval`: perplexity of a local checkpoint or compressed artifact on held-out tokens. */

import { readFile, stat } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { type Command, InvalidArgumentError } from "commander";
import { readModelConfig } from "../checkpoint/config.ts";
import { TokenDataError } from "../data/errors.ts";
import {
  MAX_TOKEN_FILE_BYTES,
  parseTokenIdJson,
  type TokenLimits,
  validateTokenSequences,
} from "../data/token-ids.ts";
import { openLocalCheckpoint } from "./offline.ts";
import { createProgress } from "./progress.ts";

/** Error-path prefix of the evaluation data, as in `eval.sequences[3][17]`. */
const FIELD = "eval";

interface EvalFlags {
  eval: string;
  sequences?: number;
  sequenceLength?: number;
  json?: boolean;
}

function parsePositiveInteger(name: string) {
  return (value: string) => {
    const parsed = Number(value);
    if (value.trim() === "" || !Number.isInteger(parsed) || parsed < 1) {
      throw new InvalidArgumentError(`${name} must be an integer >= 1, got "${value}"`);
    }
    return parsed;
  };
}

/** Prints a failure with its error code first and sets exit status 1. */
function reportFailure(error: unknown, json: boolean): void {
  if (!(error instanceof Error && "code" in error && typeof error.code === "string")) throw error;
  const { code, message } = error;
  if (json) process.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
  else process.stderr.write(`error ${code}: ${message}\n`);
  process.exitCode = 1;
}

/**
 * Reads token sequences for `field` ("evaluation", "calibration"): token-id
 * JSON when the file name ends in `.json`, otherwise plain text encoded with
 * the checkpoint's tokenizer.json and cut into sequences of
 * `--sequence-length` tokens.
 */
export async function readTokenFile(
  file: string,
  field: string,
  directory: string,
  limits: TokenLimits,
  selection: { sequences?: number; sequenceLength?: number },
): Promise<Int32Array[]> {
  const info = await stat(file);
  if (file.toLowerCase().endsWith(".json")) {
    if (info.size > MAX_TOKEN_FILE_BYTES) {
      throw new TokenDataError(
        "INVALID_TOKENS",
        field,
        `${field}: ${file} has ${info.size} bytes, above the limit of ${MAX_TOKEN_FILE_BYTES}: use fewer or shorter sequences`,
      );
    }
    return parseTokenIdJson(await readFile(file), limits, field, {
      sequences: selection.sequences,
      sequenceLength: selection.sequenceLength,
    });
  }

  if (selection.sequenceLength === undefined) {
    throw new TokenDataError(
      "INVALID_TOKENS",
      field,
      `${field}: ${file} is plain text (its name does not end in .json), so --sequence-length is needed to cut it into sequences`,
    );
  }
  const { loadTokenizer, MAX_TEXT_BYTES, tokenizeText } = await import("../data/text.ts");
  if (info.size > MAX_TEXT_BYTES) {
    throw new TokenDataError(
      "INVALID_TOKENS",
      field,
      `${field}: ${file} has ${info.size} bytes, above the limit of ${MAX_TEXT_BYTES}`,
    );
  }
  const tokenizer = await loadTokenizer(directory);
  const sequences = await tokenizeText(
    await readFile(file, "utf8"),
    tokenizer,
    { sequenceLength: selection.sequenceLength, sequences: selection.sequences },
    field,
  );
  validateTokenSequences(sequences, limits, field);
  return sequences;
}

async function runEval(target: string, flags: EvalFlags): Promise<void> {
  const json = flags.json ?? false;
  const progress = createProgress(process.stderr, !json);
  // Loaded here so the other commands work even where the BLAS addon is missing.
  const { checkModelTensors, evaluatePerplexity, modelSpecFromConfig, tokenLimits } = await import(
    "../model/index.ts"
  );
  try {
    const { checkpoint, dir } = await openLocalCheckpoint(target);
    try {
      const spec = modelSpecFromConfig(await readModelConfig(dir));
      checkModelTensors(checkpoint, spec);
      const sequences = await readTokenFile(flags.eval, FIELD, dir, tokenLimits(spec, 2), {
        sequences: flags.sequences,
        sequenceLength: flags.sequenceLength,
      });
      const started = performance.now();
      const result = await evaluatePerplexity(checkpoint, spec, sequences, {
        field: FIELD,
        onLayer: (index, count) => progress.update(index + 1, count, `decoder layer ${index}`),
      });
      const seconds = (performance.now() - started) / 1000;
      progress.finish();
      if (json) {
        process.stdout.write(`${JSON.stringify({ model: target, ...result, seconds }, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        `mean NLL ${result.meanNll.toFixed(4)} nats/token, perplexity ${result.perplexity.toFixed(3)} ` +
          `over ${result.tokens} predicted tokens in ${result.sequences} sequences (${seconds.toFixed(1)} s)\n`,
      );
    } finally {
      await checkpoint.close();
    }
  } catch (error) {
    progress.finish();
    reportFailure(error, json);
  }
}

export function registerEvalCommand(program: Command): void {
  program
    .command("eval")
    .description(
      "measure the perplexity of a local checkpoint or compressed artifact on held-out tokens",
    )
    .argument(
      "<model>",
      "checkpoint or artifact directory (config.json beside the weights) or its .safetensors file",
    )
    .requiredOption(
      "--eval <file>",
      'evaluation data: token-id JSON ({"sequences": [[1, 415, ...], ...]}) when the name ends in .json, otherwise plain text encoded with the model\'s tokenizer.json',
    )
    .option(
      "--sequences <n>",
      "evaluate only the first n sequences",
      parsePositiveInteger("--sequences"),
    )
    .option(
      "--sequence-length <tokens>",
      "truncate every sequence to this many tokens; plain text is cut into sequences of this length",
      parsePositiveInteger("--sequence-length"),
    )
    .option("--json", "print the result as JSON, without progress lines")
    .action(runEval);
}
