/**
 * Opening a job's inputs from storage: the checkpoint through range reads, so neither the API nor
 * the worker copies the weights to local disk, and config.json and the token data whole.
 */

import { specFromConfig } from "../../workers/pipeline/compress.ts";
import { type Checkpoint, openCheckpoint } from "../checkpoint/checkpoint.ts";
import { CONFIG_FILE_NAME, MAX_CONFIG_BYTES, parseModelConfig } from "../checkpoint/config.ts";
import { CheckpointError } from "../checkpoint/errors.ts";
import { SAFETENSORS_FILE_NAME, SAFETENSORS_INDEX_NAME } from "../checkpoint/shard-index.ts";
import type { CompressionOptions } from "../compression/options.ts";
import { TokenDataError } from "../data/errors.ts";
import {
  MAX_TOKEN_FILE_BYTES,
  parseTokenIdJson,
  type TokenLimits,
  type TokenSelection,
} from "../data/token-ids.ts";
import { tokenLimits } from "../model/model.ts";
import { byteSource } from "../storage/byte-source.ts";
import type { Storage } from "../storage/types.ts";
import type { JobInputs, StoredInput } from "./model.ts";

/** Opens the checkpoint named by `inputs`, validating every safetensors header. */
export async function openStoredCheckpoint(
  storage: Storage,
  inputs: JobInputs,
): Promise<Checkpoint> {
  const sources = inputs.checkpoint.map((input) => ({
    name: input.name,
    source: byteSource(storage, input.key, input.size),
  }));
  return openCheckpoint(sources);
}

/** Reads config.json and validates it; returns its bytes for the artifact. */
export async function readStoredConfig(storage: Storage, input: StoredInput): Promise<Buffer> {
  if (input.size > MAX_CONFIG_BYTES) {
    throw new CheckpointError(
      "INVALID_CONFIG",
      `${CONFIG_FILE_NAME} has ${input.size} bytes, above the limit of ${MAX_CONFIG_BYTES}: upload the config.json saved with the model`,
    );
  }
  const bytes = await storage.read(input.key, 0, input.size);
  parseModelConfig(bytes);
  return bytes;
}

/**
 * Builds the inputs of a `source` job from the objects directly under the prefix `source/`:
 * `config.json`, and `model.safetensors` or the index with the `.safetensors` shards it names.
 * Deeper objects and other files are ignored, as a checkpoint directory loader would.
 */
export async function inputsFromSource(storage: Storage, source: string): Promise<JobInputs> {
  const prefix = `${source}/`;
  const objects = await storage.list(prefix);
  const files = objects
    .map((object) => ({
      name: object.key.slice(prefix.length),
      key: object.key,
      size: object.size,
    }))
    .filter((file) => !file.name.includes("/"));
  const config = files.find((file) => file.name === CONFIG_FILE_NAME);
  if (config === undefined) {
    throw new CheckpointError(
      "MISSING_CONFIG",
      `${CONFIG_FILE_NAME} is missing under storage prefix ${JSON.stringify(prefix)}: store it next to the weights`,
    );
  }
  const checkpoint = files.filter(
    (file) => file.name.endsWith(".safetensors") || file.name === SAFETENSORS_INDEX_NAME,
  );
  if (checkpoint.length === 0) {
    throw new CheckpointError(
      "MISSING_CHECKPOINT",
      `found neither ${SAFETENSORS_FILE_NAME} nor ${SAFETENSORS_INDEX_NAME} under storage prefix ${JSON.stringify(prefix)}: store the weights in Hugging Face safetensors layout`,
    );
  }
  return { source, checkpoint, config };
}

/** Calibration and evaluation sequences of a job, parsed and checked against the model. */
export interface JobTokenData {
  calibration?: Int32Array[];
  evaluation?: Int32Array[];
}

async function readStoredTokens(
  storage: Storage,
  input: StoredInput,
  field: string,
  limits: TokenLimits,
  selection: TokenSelection,
): Promise<Int32Array[]> {
  if (input.size > MAX_TOKEN_FILE_BYTES) {
    throw new TokenDataError(
      "INVALID_TOKENS",
      field,
      `${field}: token-id JSON has ${input.size} bytes, above the limit of ${MAX_TOKEN_FILE_BYTES}: use fewer or shorter sequences`,
    );
  }
  return parseTokenIdJson(await storage.read(input.key, 0, input.size), limits, field, selection);
}

/**
 * Reads the job's calibration and evaluation token-id JSON, selecting sequences as the options
 * ask (`calibrationSequences`, `sequenceLength`) and checking ids and lengths against the model
 * in config.json. Evaluation sequences need 2 tokens, so at least one token is predicted.
 */
export async function readStoredTokenData(
  storage: Storage,
  inputs: JobInputs,
  options: CompressionOptions,
  config: Uint8Array,
): Promise<JobTokenData> {
  if (inputs.calibration === undefined && inputs.evaluation === undefined) return {};
  const spec = specFromConfig(config, "to read calibration or evaluation token data");
  const data: JobTokenData = {};
  if (inputs.calibration) {
    data.calibration = await readStoredTokens(
      storage,
      inputs.calibration,
      "calibration",
      tokenLimits(spec),
      {
        sequences: options.calibrationSequences,
        sequenceLength: options.sequenceLength,
      },
    );
  }
  if (inputs.evaluation) {
    data.evaluation = await readStoredTokens(
      storage,
      inputs.evaluation,
      "evaluation",
      tokenLimits(spec, 2),
      {
        sequenceLength: options.sequenceLength,
      },
    );
  }
  return data;
}
