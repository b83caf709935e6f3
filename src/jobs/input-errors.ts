import { CheckpointError } from "../checkpoint/errors.ts";
import { CompressionError } from "../compression/errors.ts";
import { TokenDataError } from "../data/errors.ts";
import { ModelError } from "../model/errors.ts";

/** An error about the submitted checkpoint, config, token data or options: retrying cannot help. */
export type InputError = CheckpointError | CompressionError | TokenDataError | ModelError;

/**
 * Returns true for the typed errors of the checkpoint, compression, token data and model modules
 * with a 4xx status. Their `code` and `status` go to the client as they are; errors of these
 * classes with a 5xx status are bugs and stay internal.
 */
export function isInputError(error: unknown): error is InputError {
  const typed =
    error instanceof CheckpointError ||
    error instanceof CompressionError ||
    error instanceof TokenDataError ||
    error instanceof ModelError;
  return typed && error.status >= 400 && error.status < 500;
}

/** Returns the field an input error is about, when its module records one. */
export function inputErrorField(error: InputError): string | undefined {
  return error instanceof CheckpointError ? undefined : error.field;
}
