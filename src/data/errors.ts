/**
 * Catalogue of token data errors: calibration or evaluation data that the
 * model cannot run on. Each has the HTTP status the service returns for it
 * and `field`, the path of the offending value, e.g.
 * `calibration.sequences[3][17]`.
 */
export const TOKEN_DATA_ERRORS = {
  INVALID_TOKENS: {
    status: 422,
    summary: "token-id data is malformed, too large, or holds ids or lengths the model cannot run",
  },
  INVALID_TOKENIZER: {
    status: 422,
    summary: "tokenizer.json is missing, too large or not a tokenizer the text encoder can load",
  },
} as const satisfies Record<string, { status: number; summary: string }>;

export type TokenDataErrorCode = keyof typeof TOKEN_DATA_ERRORS;

export class TokenDataError extends Error {
  override readonly name = "TokenDataError";
  readonly code: TokenDataErrorCode;
  readonly status: number;
  readonly field: string;

  constructor(
    code: TokenDataErrorCode,
    field: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = code;
    this.status = TOKEN_DATA_ERRORS[code].status;
    this.field = field;
  }
}
