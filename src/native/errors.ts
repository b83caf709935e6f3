/**
 * Typed errors of the native BLAS/LAPACK addon. The addon throws plain
 * `Error`s carrying `code`, `operation` and `info`; `toNativeError` turns them
 * into `NativeError` instances.
 */

export type NativeErrorCode =
  | "INVALID_SHAPE"
  | "INVALID_ARGUMENT"
  | "INVALID_CONFIGURATION"
  | "DTYPE_MISMATCH"
  | "NON_FINITE"
  | "NOT_POSITIVE_DEFINITE"
  | "SINGULAR_MATRIX"
  | "NO_CONVERGENCE"
  | "LAPACK_ERROR"
  | "OUT_OF_MEMORY"
  | "NATIVE_LIBRARY_MISSING";

const CODES: ReadonlySet<string> = new Set<NativeErrorCode>([
  "INVALID_SHAPE",
  "INVALID_ARGUMENT",
  "INVALID_CONFIGURATION",
  "DTYPE_MISMATCH",
  "NON_FINITE",
  "NOT_POSITIVE_DEFINITE",
  "SINGULAR_MATRIX",
  "NO_CONVERGENCE",
  "LAPACK_ERROR",
  "OUT_OF_MEMORY",
  "NATIVE_LIBRARY_MISSING",
]);

export class NativeError extends Error {
  override readonly name = "NativeError";
  readonly code: NativeErrorCode;
  /** Public function that failed, e.g. `cholesky`, or `load` for the loader. */
  readonly operation: string;
  /** LAPACK `info` value when a LAPACK routine reported the failure. */
  readonly info?: number;

  constructor(
    code: NativeErrorCode,
    operation: string,
    message: string,
    options: { info?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.operation = operation;
    if (options.info !== undefined) this.info = options.info;
  }
}

export function isNativeErrorCode(value: unknown): value is NativeErrorCode {
  return typeof value === "string" && CODES.has(value);
}

/**
 * Converts an error thrown or rejected by the addon into a NativeError.
 * Errors without a known `code` (e.g. a TypeError from misuse of the raw
 * addon) are returned unchanged.
 */
export function toNativeError(error: unknown, operation: string): unknown {
  if (error instanceof NativeError) return error;
  if (!(error instanceof Error)) return error;
  const { code, info } = error as Error & { code?: unknown; info?: unknown };
  if (!isNativeErrorCode(code)) return error;
  return new NativeError(code, operation, error.message, {
    info: typeof info === "number" ? info : undefined,
  });
}
