/**
 * Token-id data: calibration or evaluation sequences as JSON,
 * `{ "sequences": [[id, ...], ...] }`. Other top-level keys (texts,
 * reference values) are accepted and ignored.
 */

import { TokenDataError } from "./errors.ts";

/**
 * Size cap on a token-id JSON file, checked before parsing. By estimate,
 * 64 MiB fits over 10 million ids.
 */
export const MAX_TOKEN_FILE_BYTES = 64 * 1024 * 1024;

/** Cap on the number of sequences in one file. */
export const MAX_SEQUENCES = 100_000;

/** Token ids and sequence lengths the model accepts. */
export interface TokenLimits {
  /** Ids must lie in `[0, vocabSize)`. */
  vocabSize: number;
  /** Minimum tokens per sequence: 1 to run the model, 2 to predict at least one token. */
  minLength: number;
  /** Maximum tokens per sequence, when the model has a cap. */
  maxLength?: number;
  /** Config field behind `maxLength`, for messages, e.g. "max_position_embeddings 512". */
  maxLengthReason?: string;
}

/** Part of the data to use. */
export interface TokenSelection {
  /** Number of leading sequences to use, all when absent. */
  sequences?: number;
  /** Truncate every sequence to at most this many tokens. */
  sequenceLength?: number;
}

function invalid(field: string, message: string, cause?: unknown): TokenDataError {
  return new TokenDataError("INVALID_TOKENS", field, `${field}: ${message}`, { cause });
}

function tokenCount(count: number): string {
  return count === 1 ? "1 token" : `${count} tokens`;
}

function checkSelection(selection: TokenSelection, limits: TokenLimits, field: string): void {
  const { sequences, sequenceLength } = selection;
  if (sequences !== undefined && (!Number.isInteger(sequences) || sequences < 1)) {
    throw invalid(field, `the number of sequences must be an integer >= 1, got ${sequences}`);
  }
  if (
    sequenceLength !== undefined &&
    (!Number.isInteger(sequenceLength) || sequenceLength < limits.minLength)
  ) {
    throw invalid(
      field,
      `the sequence length must be an integer >= ${limits.minLength}, got ${sequenceLength}`,
    );
  }
}

/**
 * Checks sequences against the model's limits and throws INVALID_TOKENS
 * naming the first bad value, e.g. `calibration.sequences[3][17]`:
 * non-integer ids, ids outside `[0, vocabSize)`, sequences shorter than
 * `minLength` (empty ones included) or longer than `maxLength`, and more
 * than MAX_SEQUENCES sequences.
 */
export function validateTokenSequences(
  sequences: readonly ArrayLike<unknown>[],
  limits: TokenLimits,
  field: string,
): void {
  if (sequences.length === 0) throw invalid(`${field}.sequences`, "contains no sequences");
  if (sequences.length > MAX_SEQUENCES) {
    throw invalid(
      `${field}.sequences`,
      `contains ${sequences.length} sequences, more than the limit of ${MAX_SEQUENCES}: split the data into several files`,
    );
  }
  for (let i = 0; i < sequences.length; i++) {
    const sequence = sequences[i];
    const path = `${field}.sequences[${i}]`;
    if (sequence.length < limits.minLength) {
      const detail = sequence.length === 0 ? "is empty" : `has ${tokenCount(sequence.length)}`;
      throw invalid(path, `${detail}, but sequences need at least ${tokenCount(limits.minLength)}`);
    }
    if (limits.maxLength !== undefined && sequence.length > limits.maxLength) {
      throw invalid(
        path,
        `has ${sequence.length} tokens, more than the ${limits.maxLengthReason ?? `limit ${limits.maxLength}`} allows: truncate it with a sequence length of at most ${limits.maxLength}`,
      );
    }
    for (let j = 0; j < sequence.length; j++) {
      const id = sequence[j];
      if (typeof id !== "number" || !Number.isInteger(id)) {
        throw invalid(`${path}[${j}]`, `token id ${JSON.stringify(id)} is not an integer`);
      }
      if (id < 0 || id >= limits.vocabSize) {
        throw invalid(
          `${path}[${j}]`,
          `token id ${id} is outside the vocabulary [0, ${limits.vocabSize}): encode the text with this model's tokenizer`,
        );
      }
    }
  }
}

/**
 * Parses token-id JSON, selects the first `selection.sequences` sequences,
 * truncates each to `selection.sequenceLength`, and validates what remains
 * (ids past the truncation point are not inspected). `field` prefixes every
 * error path, e.g. "calibration" or "evaluation".
 */
export function parseTokenIdJson(
  input: string | Uint8Array,
  limits: TokenLimits,
  field: string,
  selection: TokenSelection = {},
): Int32Array[] {
  checkSelection(selection, limits, field);
  const size = typeof input === "string" ? Buffer.byteLength(input, "utf8") : input.byteLength;
  if (size > MAX_TOKEN_FILE_BYTES) {
    throw invalid(
      field,
      `token-id JSON has ${size} bytes, above the limit of ${MAX_TOKEN_FILE_BYTES}: use fewer or shorter sequences`,
    );
  }

  let text: string;
  try {
    text =
      typeof input === "string"
        ? input
        : new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(input);
  } catch (error) {
    throw invalid(field, "token-id JSON is not valid UTF-8", error);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw invalid(field, `token-id JSON is not valid JSON (${(error as Error).message})`, error);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(field, 'expected a JSON object of the form {"sequences": [[1, 415, ...], ...]}');
  }
  const sequences = (value as { sequences?: unknown }).sequences;
  if (!Array.isArray(sequences)) {
    throw invalid(`${field}.sequences`, "is missing or not an array of token-id arrays");
  }
  if (sequences.length > MAX_SEQUENCES) {
    throw invalid(
      `${field}.sequences`,
      `contains ${sequences.length} sequences, more than the limit of ${MAX_SEQUENCES}: split the data into several files`,
    );
  }
  const count = selection.sequences ?? sequences.length;
  if (count > sequences.length) {
    throw invalid(
      `${field}.sequences`,
      `${count} sequences were requested but the data contains ${sequences.length}`,
    );
  }

  const selected: unknown[][] = [];
  for (let i = 0; i < count; i++) {
    const sequence: unknown = sequences[i];
    if (!Array.isArray(sequence)) {
      throw invalid(`${field}.sequences[${i}]`, "is not an array of token ids");
    }
    selected.push(
      selection.sequenceLength === undefined
        ? sequence
        : sequence.slice(0, selection.sequenceLength),
    );
  }
  validateTokenSequences(selected, limits, field);
  return selected.map((sequence) => Int32Array.from(sequence as number[]));
}
