/**
 * Errors about a compression request that are not about the checkpoint's
 * bytes: options the pipeline cannot run. Each has a stable code and the
 * HTTP status the API answers with.
 */

export const COMPRESSION_ERRORS = {
  METHOD_NOT_AVAILABLE: 400,
  MISSING_INPUT: 400,
  UNUSED_INPUT: 400,
  CANCELLED: 409,
} as const;

export type CompressionErrorCode = keyof typeof COMPRESSION_ERRORS;

export class CompressionError extends Error {
  override readonly name = "CompressionError";
  readonly code: CompressionErrorCode;
  readonly status: number;
  readonly field?: string;

  constructor(code: CompressionErrorCode, message: string, field?: string) {
    super(message);
    this.code = code;
    this.status = COMPRESSION_ERRORS[code];
    this.field = field;
  }
}
