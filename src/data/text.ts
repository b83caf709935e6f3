/**
 * Plain text to token ids with a checkpoint's `tokenizer.json`, through
 * `@huggingface/tokenizers` (a pure JavaScript port of Hugging Face
 * tokenizers). Paragraphs, separated by blank lines, are trimmed and encoded
 * one by one with the tokenizer's special tokens (BOS for LLaMA tokenizers),
 * concatenated, and cut into sequences of a fixed length.
 */

import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { TimeSlice } from "../model/event-loop.ts";
import { TokenDataError } from "./errors.ts";

export const TOKENIZER_FILE_NAME = "tokenizer.json";
export const TOKENIZER_CONFIG_FILE_NAME = "tokenizer_config.json";

/**
 * Size cap on tokenizer.json and tokenizer_config.json. It is an estimate
 * that leaves room above the tokenizers of common LLaMA-family models.
 */
export const MAX_TOKENIZER_BYTES = 64 * 1024 * 1024;

/** Size cap on a text to tokenize. */
export const MAX_TEXT_BYTES = 64 * 1024 * 1024;

const BLANK_LINE = /\n\s*\n/;

function invalidTokenizer(message: string, cause?: unknown): TokenDataError {
  return new TokenDataError("INVALID_TOKENIZER", TOKENIZER_FILE_NAME, message, { cause });
}

async function readJsonFile(path: string, optional: boolean): Promise<unknown> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (info === undefined) {
    if (optional) return undefined;
    throw invalidTokenizer(
      `${path} is missing: text needs the checkpoint's ${TOKENIZER_FILE_NAME}, or pass token-id JSON instead`,
    );
  }
  if (info.size > MAX_TOKENIZER_BYTES) {
    throw invalidTokenizer(
      `${path} has ${info.size} bytes, above the limit of ${MAX_TOKENIZER_BYTES}`,
    );
  }
  try {
    return JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw invalidTokenizer(`${path} is not valid JSON (${(error as Error).message})`, error);
  }
}

/**
 * Loads `tokenizer.json` from a checkpoint directory, with
 * `tokenizer_config.json` when present.
 */
export async function loadTokenizer(directory: string): Promise<Tokenizer> {
  const tokenizerJson = await readJsonFile(join(directory, TOKENIZER_FILE_NAME), false);
  const config = (await readJsonFile(join(directory, TOKENIZER_CONFIG_FILE_NAME), true)) ?? {};
  try {
    return new Tokenizer(tokenizerJson as object, config as object);
  } catch (error) {
    throw invalidTokenizer(
      `${TOKENIZER_FILE_NAME} in ${directory} could not be loaded (${(error as Error).message}): upload the tokenizer saved with the model`,
      error,
    );
  }
}

export interface TextSequenceOptions {
  /** Tokens per sequence. */
  sequenceLength: number;
  /** Maximum number of sequences. Without it every full sequence is returned. */
  sequences?: number;
}

/**
 * Encodes `text` paragraph by paragraph and cuts the concatenated ids into
 * sequences of `sequenceLength` tokens. A trailing remainder shorter than
 * `sequenceLength` is dropped. Raises INVALID_TOKENS when the text is too
 * large or yields fewer than one full sequence, or fewer than
 * `options.sequences`.
 */
export async function tokenizeText(
  text: string,
  tokenizer: Tokenizer,
  options: TextSequenceOptions,
  field = "text",
): Promise<Int32Array[]> {
  const { sequenceLength, sequences: wanted } = options;
  if (!Number.isInteger(sequenceLength) || sequenceLength < 1) {
    throw new TokenDataError(
      "INVALID_TOKENS",
      field,
      `${field}: the sequence length must be an integer >= 1, got ${sequenceLength}`,
    );
  }
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_TEXT_BYTES) {
    throw new TokenDataError(
      "INVALID_TOKENS",
      field,
      `${field}: the text has ${bytes} bytes, above the limit of ${MAX_TEXT_BYTES}`,
    );
  }

  const needed = wanted === undefined ? Number.POSITIVE_INFINITY : wanted * sequenceLength;
  const ids: number[] = [];
  const slice = new TimeSlice();
  for (const paragraph of text.split(BLANK_LINE)) {
    const trimmed = paragraph.trim();
    if (trimmed.length === 0) continue;
    for (const id of tokenizer.encode(trimmed).ids) ids.push(id);
    if (ids.length >= needed) break;
    if (slice.due()) await slice.pause();
  }

  const count = Math.min(
    Math.floor(ids.length / sequenceLength),
    wanted ?? Number.POSITIVE_INFINITY,
  );
  if (count < 1 || (wanted !== undefined && count < wanted)) {
    throw new TokenDataError(
      "INVALID_TOKENS",
      field,
      `${field}: the text encodes to ${ids.length} tokens, fewer than ${wanted ?? 1} sequences of ${sequenceLength} need: provide more text or shorten the sequences`,
    );
  }
  const result: Int32Array[] = [];
  for (let i = 0; i < count; i++) {
    result.push(Int32Array.from(ids.slice(i * sequenceLength, (i + 1) * sequenceLength)));
  }
  return result;
}
