import { CheckpointError, quote } from "./errors.ts";

/** Longest accepted tensor name in UTF-16 code units. Real names are under 200. */
export const MAX_TENSOR_NAME_LENGTH = 1024;

/** Longest accepted shard file name, the usual file system limit (NAME_MAX). */
export const MAX_SHARD_NAME_LENGTH = 255;

const UNSAFE_NAMES = new Set(["__proto__", "constructor", "prototype"]);

/** True when `text` contains a C0 or C1 control character (U+0000-U+001F, U+007F-U+009F). */
function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code <= 0x1f || (code >= 0x7f && code <= 0x9f)) return true;
  }
  return false;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Raises UNSAFE_NAME for keys that collide with JavaScript object internals. */
export function checkUnsafeName(name: string, where: string): void {
  if (UNSAFE_NAMES.has(name)) {
    throw new CheckpointError(
      "UNSAFE_NAME",
      `${where} uses the name ${quote(name)}, which is rejected because it collides with JavaScript object internals: rename it`,
    );
  }
}

/**
 * Validates a tensor name: not unsafe, not empty, at most
 * MAX_TENSOR_NAME_LENGTH, no control characters, no lone surrogates (which
 * cannot be written back as UTF-8).
 */
export function checkTensorName(name: string, where: string): void {
  checkUnsafeName(name, where);
  let problem: string | undefined;
  if (name.length === 0) {
    problem = "is empty";
  } else if (name.length > MAX_TENSOR_NAME_LENGTH) {
    problem = `is ${name.length} characters long, above the limit of ${MAX_TENSOR_NAME_LENGTH}`;
  } else if (hasControlCharacter(name)) {
    problem = "contains a control character";
  } else if (LONE_SURROGATE.test(name)) {
    problem = "contains a lone UTF-16 surrogate";
  }
  if (problem !== undefined) {
    throw new CheckpointError(
      "INVALID_NAME",
      `${where}: tensor name ${quote(name)} ${problem}: re-export the checkpoint with plain tensor names`,
    );
  }
}

/**
 * Validates a shard file name: one plain path component, so joining it to the
 * checkpoint directory can never reach another directory. Rejects `.`, `..`,
 * `/`, `\`, `:` (drive-relative paths and alternate data streams on Windows),
 * NUL and other control characters, and names longer than MAX_SHARD_NAME_LENGTH.
 */
export function checkShardName(name: string, where: string): void {
  let problem: string | undefined;
  if (name.length === 0) {
    problem = "is empty";
  } else if (name === "." || name === "..") {
    problem = "is a directory reference";
  } else if (/[/\\:]/.test(name)) {
    problem = "contains a path separator or drive colon";
  } else if (hasControlCharacter(name)) {
    problem = "contains a control character";
  } else if (name.length > MAX_SHARD_NAME_LENGTH) {
    problem = `is ${name.length} characters long, above the limit of ${MAX_SHARD_NAME_LENGTH}`;
  }
  if (problem !== undefined) {
    throw new CheckpointError(
      "UNSAFE_SHARD_NAME",
      `${where}: shard name ${quote(name)} ${problem}: shard names must be plain file names in the checkpoint directory, like "model-00001-of-00002.safetensors"`,
    );
  }
}
