/**
 * Native BLAS/LAPACK operations on row-major matrices (OpenBLAS + LAPACKE).
 *
 * Every function except gemm and syrk copies its inputs when called, so
 * callers may reuse their arrays right away. gemm reads A and B, and syrk
 * reads A, in place (weights are too large to copy on every call): do not
 * write to or transfer them until the promise settles. The accumulator C is
 * always copied. All work runs on the libuv thread pool without blocking
 * the event loop. Calls run one at a time in call order, each using every
 * BLAS thread (see setThreads). Inputs to one call share one element type,
 * which the outputs keep. Failures reject with NativeError; validation
 * (shapes, lengths, element types, finite values) happens before any LAPACK
 * routine runs.
 */

import type { FloatArray, Matrix, Matrix64 } from "../linalg/matrix.ts";
import { NativeError, toNativeError } from "./errors.ts";
import { type BlasInfo, loadNative, type NativeAddon, type NativeJob } from "./load.ts";
import {
  readAccumulator,
  readFlag,
  readFloat64Result,
  readOptions,
  readScalar,
} from "./options.ts";
import { SerialQueue } from "./queue.ts";

export { NativeError, type NativeErrorCode } from "./errors.ts";
export type { BlasInfo } from "./load.ts";

export interface GemmOptions<T extends FloatArray = FloatArray> {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** Accumulator, not modified; must be `[rows of op(A), cols of op(B)]`. */
  c?: Matrix<T>;
  /** Scale of `c`; defaults to 1 when `c` is given. */
  beta?: number;
}

export interface SyrkOptions<T extends FloatArray = FloatArray> {
  /** false: `A A^T` `[rows, rows]`; true: `A^T A` `[cols, cols]`. */
  trans?: boolean;
  alpha?: number;
  /** Accumulator, not modified; only its lower triangle is read. */
  c?: Matrix<T>;
  /** Scale of `c`; defaults to 1 when `c` is given. */
  beta?: number;
}

/**
 * syrk options for a float64 result from an A of either element type. A
 * float32 A is widened on the worker thread into a copy that is freed before
 * the promise settles, so no float64 copy of A stays in JS memory.
 */
export interface Float64SyrkOptions extends SyrkOptions<Float64Array> {
  dtype: "float64";
}

export interface TrsmOptions {
  /** left: solve `op(A) X = alpha B`; right: solve `X op(A) = alpha B`. */
  side: "left" | "right";
  /** Whether A is lower (true) or upper (false) triangular; the other triangle is not read. */
  lower: boolean;
  transA?: boolean;
  /** Treat the diagonal of A as ones without reading it. */
  unitDiagonal?: boolean;
  alpha?: number;
}

export interface EighResult<T extends FloatArray = FloatArray> {
  /** Eigenvalues in ascending order, `[n]`. */
  values: T;
  /** Orthonormal eigenvectors as the columns of `[n, n]`, in the order of `values`. */
  vectors: Matrix<T>;
}

export interface SvdResult<T extends FloatArray = FloatArray> {
  u: Matrix<T>; // [m, k]
  /** Singular values in descending order, `[k]` with k = min(m, n). */
  s: T;
  vt: Matrix<T>; // [k, n]
}

export interface QrOptions {
  /** Whether to form Q; defaults to true. */
  wantQ?: boolean;
}

export interface QrResult<T extends FloatArray = FloatArray> {
  q: Matrix<T>; // [m, k], orthonormal columns
  r: Matrix<T>; // [k, n], upper triangular
}

export interface QrPivotedResult<T extends FloatArray = FloatArray> {
  /** `[k, n]` upper triangular with non-increasing |diagonal|, k = min(m, n). */
  r: Matrix<T>;
  /** `pivots[j]` is the original column placed at position j, so `A[:, pivots] = Q R`. */
  pivots: Int32Array;
}

const queue = new SerialQueue();

/**
 * Prepares a job synchronously (the addon validates and copies or borrows the
 * inputs here) and runs it once every earlier call has finished.
 */
function submit<R>(operation: string, prepare: (addon: NativeAddon) => NativeJob): Promise<R> {
  let addon: NativeAddon;
  let job: NativeJob;
  try {
    addon = loadNative();
    job = prepare(addon);
  } catch (error) {
    return Promise.reject(toNativeError(error, operation));
  }
  return queue
    .run(() => addon.run(job))
    .then(
      (result) => result as R,
      (error: unknown) => {
        throw toNativeError(error, operation);
      },
    );
}

/**
 * Returns `alpha * op(A) op(B) + beta * C` as a new matrix. A and B are read
 * in place, not copied: keep them unchanged until the promise settles.
 */
export function gemm<T extends FloatArray = FloatArray>(
  a: Matrix<T>,
  b: Matrix<T>,
  opts?: GemmOptions<T>,
): Promise<Matrix<T>> {
  return submit("gemm", (addon) => {
    const options = readOptions(opts, "gemm");
    const { c, beta } = readAccumulator(options.c, options.beta, "gemm");
    return addon.gemm(
      a,
      b,
      c,
      readFlag(options.transA, "transA", "gemm", false),
      readFlag(options.transB, "transB", "gemm", false),
      readScalar(options.alpha, "alpha", "gemm", 1),
      beta,
    );
  });
}

/**
 * Returns the full symmetric `alpha * A A^T + beta * C` (or `A^T A` with
 * trans), both triangles filled. A is read in place, not copied: keep it
 * unchanged until the promise settles. With `dtype: "float64"` the result,
 * C and the arithmetic are float64 whatever A's element type.
 */
export function syrk(a: Matrix, opts: Float64SyrkOptions): Promise<Matrix64>;
export function syrk<T extends FloatArray = FloatArray>(
  a: Matrix<T>,
  opts?: SyrkOptions<T>,
): Promise<Matrix<T>>;
export function syrk(
  a: Matrix,
  opts?: SyrkOptions & { dtype?: Float64SyrkOptions["dtype"] },
): Promise<Matrix> {
  return submit("syrk", (addon) => {
    const options = readOptions(opts, "syrk");
    const { c, beta } = readAccumulator(options.c, options.beta, "syrk");
    return addon.syrk(
      a,
      c,
      readFlag(options.trans, "trans", "syrk", false),
      readScalar(options.alpha, "alpha", "syrk", 1),
      beta,
      readFloat64Result(options.dtype, "syrk"),
    );
  });
}

/**
 * Returns the lower Cholesky factor L with `A = L L^T` and a zero upper
 * triangle (LAPACK potrf). Only the lower triangle of A is read. Rejects with
 * NOT_POSITIVE_DEFINITE when a leading minor is not positive.
 */
export function cholesky<T extends FloatArray = FloatArray>(a: Matrix<T>): Promise<Matrix<T>> {
  return submit("cholesky", (addon) => addon.cholesky(a));
}

/**
 * Solves a triangular system for X (BLAS trsm). Rejects with SINGULAR_MATRIX
 * when a diagonal element of A is zero and `unitDiagonal` is not set.
 */
export function trsm<T extends FloatArray = FloatArray>(
  a: Matrix<T>,
  b: Matrix<T>,
  opts: TrsmOptions,
): Promise<Matrix<T>> {
  return submit("trsm", (addon) => {
    const options = readOptions(opts, "trsm");
    if (options.side !== "left" && options.side !== "right") {
      throw new NativeError(
        "INVALID_ARGUMENT",
        "trsm",
        `trsm: option side must be 'left' or 'right', got ${String(options.side)}`,
      );
    }
    if (typeof options.lower !== "boolean") {
      throw new NativeError("INVALID_ARGUMENT", "trsm", "trsm: option lower must be a boolean");
    }
    return addon.trsm(
      a,
      b,
      options.side === "left",
      options.lower,
      readFlag(options.transA, "transA", "trsm", false),
      readFlag(options.unitDiagonal, "unitDiagonal", "trsm", false),
      readScalar(options.alpha, "alpha", "trsm", 1),
    );
  });
}

/**
 * Returns the eigendecomposition `A = V diag(values) V^T` of a symmetric
 * matrix (LAPACK syevd, divide and conquer). Only the lower triangle of A is
 * read.
 */
export function eigh<T extends FloatArray = FloatArray>(a: Matrix<T>): Promise<EighResult<T>> {
  return submit("eigh", (addon) => addon.eigh(a));
}

/** Returns the thin SVD `A = U diag(s) V^T` (LAPACK gesdd, divide and conquer). */
export function svd<T extends FloatArray = FloatArray>(a: Matrix<T>): Promise<SvdResult<T>> {
  return submit("svd", (addon) => addon.svd(a));
}

/**
 * Returns the thin QR factorization `A = Q R` (LAPACK geqrf + orgqr). With
 * `wantQ: false` only R is formed, which skips orgqr.
 */
export function qr<T extends FloatArray = FloatArray>(
  a: Matrix<T>,
  opts?: { wantQ?: true },
): Promise<QrResult<T>>;
export function qr<T extends FloatArray = FloatArray>(
  a: Matrix<T>,
  opts: { wantQ: false },
): Promise<Pick<QrResult<T>, "r">>;
export function qr<T extends FloatArray = FloatArray>(
  a: Matrix<T>,
  opts?: QrOptions,
): Promise<QrResult<T> | Pick<QrResult<T>, "r">>;
export function qr<T extends FloatArray = FloatArray>(
  a: Matrix<T>,
  opts?: QrOptions,
): Promise<QrResult<T> | Pick<QrResult<T>, "r">> {
  return submit("qr", (addon) => {
    const options = readOptions(opts, "qr");
    return addon.qr(a, readFlag(options.wantQ, "wantQ", "qr", true));
  });
}

/** Returns R and the column pivots of the pivoted QR `A P = Q R` (LAPACK geqp3). */
export function qrPivoted<T extends FloatArray = FloatArray>(
  a: Matrix<T>,
): Promise<QrPivotedResult<T>> {
  return submit("qrPivoted", (addon) => addon.qrPivoted(a));
}

/**
 * Solves `A X = B` for square A `[n, n]` and B `[n, k]` by LU with partial
 * pivoting (LAPACK gesv). Rejects with SINGULAR_MATRIX when a pivot is exactly
 * zero; a nearly singular A returns an inaccurate X without error.
 */
export function luSolve<T extends FloatArray = FloatArray>(
  a: Matrix<T>,
  b: Matrix<T>,
): Promise<Matrix<T>> {
  return submit("luSolve", (addon) => addon.luSolve(a, b));
}

/**
 * Returns the minimum-norm X `[n, k]` minimizing `||A X - B||_F` for A
 * `[m, n]` and B `[m, k]`, for any m, n and rank (LAPACK gelsd). Singular
 * values below machine precision times the largest one count as zero.
 */
export function leastSquares<T extends FloatArray = FloatArray>(
  a: Matrix<T>,
  b: Matrix<T>,
): Promise<Matrix<T>> {
  return submit("leastSquares", (addon) => addon.leastSquares(a, b));
}

/**
 * Sets the number of BLAS threads for later calls; a running call keeps its
 * count. OpenBLAS caps the count at its build's MAX_THREADS (see blasInfo().config).
 */
export function setThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > 2 ** 31 - 1) {
    throw new NativeError(
      "INVALID_ARGUMENT",
      "setThreads",
      `setThreads: thread count must be an integer >= 1, got ${String(n)}`,
    );
  }
  loadNative().setThreads(n);
}

/** Returns the thread count set by setThreads or PIFA_BLAS_THREADS (default: available CPUs). */
export function getThreads(): number {
  return loadNative().getThreads();
}

/** Describes the loaded OpenBLAS build and where each BLAS/LAPACK symbol is bound. */
export function blasInfo(): BlasInfo {
  return loadNative().blasInfo();
}
