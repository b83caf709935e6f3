/**
 * Schema of a Hugging Face `config.json`. LLaMA-family fields are typed when
 * present but all optional, because data-free compression works on any
 * architecture. Unknown keys pass through unchanged.
 */
import { join } from "node:path";
import { z } from "zod";
import { FileByteSource } from "./byte-source.ts";
import { CheckpointError, quote } from "./errors.ts";
import { findDuplicateKey } from "./json-keys.ts";

export const CONFIG_FILE_NAME = "config.json";

/** config.json size cap in bytes. Real configs are under 100 KB. */
export const MAX_CONFIG_BYTES = 4_000_000;

const positiveInt = z.number().int().positive();
const positiveNumber = z.number().positive();

export const ropeScalingSchema = z
  .object({
    rope_type: z.string().optional(),
    type: z.string().optional(),
    factor: positiveNumber.optional(),
    low_freq_factor: positiveNumber.optional(),
    high_freq_factor: positiveNumber.optional(),
    original_max_position_embeddings: positiveInt.optional(),
  })
  .loose();

export const modelConfigSchema = z
  .object({
    architectures: z.array(z.string()).optional(),
    model_type: z.string().optional(),
    hidden_size: positiveInt.optional(),
    intermediate_size: positiveInt.optional(),
    num_hidden_layers: positiveInt.optional(),
    num_attention_heads: positiveInt.optional(),
    num_key_value_heads: positiveInt.optional(),
    vocab_size: positiveInt.optional(),
    rms_norm_eps: positiveNumber.optional(),
    rope_theta: positiveNumber.optional(),
    rope_scaling: ropeScalingSchema.nullable().optional(),
    max_position_embeddings: positiveInt.optional(),
    tie_word_embeddings: z.boolean().optional(),
    sliding_window: z.number().int().nonnegative().nullable().optional(),
    torch_dtype: z.string().nullable().optional(),
    head_dim: positiveInt.nullable().optional(),
    attention_bias: z.boolean().optional(),
  })
  .loose()
  .superRefine((config, context) => {
    const { hidden_size, num_attention_heads, num_key_value_heads, head_dim } = config;
    if (
      num_attention_heads !== undefined &&
      num_key_value_heads !== undefined &&
      num_attention_heads % num_key_value_heads !== 0
    ) {
      context.addIssue({
        code: "custom",
        path: ["num_key_value_heads"],
        message: `num_attention_heads ${num_attention_heads} is not a multiple of num_key_value_heads ${num_key_value_heads}`,
      });
    }
    if (
      head_dim == null &&
      hidden_size !== undefined &&
      num_attention_heads !== undefined &&
      hidden_size % num_attention_heads !== 0
    ) {
      context.addIssue({
        code: "custom",
        path: ["num_attention_heads"],
        message: `hidden_size ${hidden_size} is not a multiple of num_attention_heads ${num_attention_heads} and head_dim is not set`,
      });
    }
  });

export type ModelConfig = z.infer<typeof modelConfigSchema>;

/** Parses and validates config.json text or bytes. */
export function parseModelConfig(input: string | Uint8Array): ModelConfig {
  let text: string;
  if (typeof input === "string") {
    text = input;
  } else {
    try {
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(input);
    } catch (error) {
      throw new CheckpointError("INVALID_CONFIG", `${CONFIG_FILE_NAME} is not valid UTF-8`, {
        cause: error,
      });
    }
  }

  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new CheckpointError(
      "INVALID_CONFIG",
      `${CONFIG_FILE_NAME} is not valid JSON (${(error as Error).message}): upload the config.json saved with the model`,
      { cause: error },
    );
  }
  const duplicate = findDuplicateKey(text);
  if (duplicate !== undefined) {
    throw new CheckpointError(
      "DUPLICATE_KEY",
      `${CONFIG_FILE_NAME} repeats the key ${quote(duplicate.key)}: readers disagree on which value wins, so keep one`,
    );
  }

  const result = modelConfigSchema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues
      .slice(0, 5)
      .map(
        (issue) => `${issue.path.length > 0 ? issue.path.join(".") : "(root)"}: ${issue.message}`,
      )
      .join("; ");
    throw new CheckpointError(
      "INVALID_CONFIG",
      `${CONFIG_FILE_NAME} is invalid (${problems}): fix these fields or upload the config.json saved with the model`,
      { cause: result.error },
    );
  }
  return result.data;
}

/** Reads and validates `config.json` from a checkpoint directory. */
export async function readModelConfig(directory: string): Promise<ModelConfig> {
  const path = join(directory, CONFIG_FILE_NAME);
  let source: FileByteSource;
  try {
    source = await FileByteSource.open(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new CheckpointError(
        "MISSING_CONFIG",
        `${CONFIG_FILE_NAME} is missing in ${directory}: upload it together with the weights`,
        { cause: error },
      );
    }
    throw error;
  }

  try {
    if (source.size > MAX_CONFIG_BYTES) {
      throw new CheckpointError(
        "INVALID_CONFIG",
        `${CONFIG_FILE_NAME} has ${source.size} bytes, above the limit of ${MAX_CONFIG_BYTES}: upload the config.json saved with the model`,
      );
    }
    return parseModelConfig(await source.read(0, source.size));
  } finally {
    await source.close();
  }
}
