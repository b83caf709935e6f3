/**
 * Dense row-major matrices. Every matrix in the service is `[rows, cols]` with
 * element `(i, j)` at `data[i * cols + j]`, in float32 or float64.
 */

export type FloatArray = Float32Array | Float64Array;
export type DType = "float32" | "float64";

export interface Matrix<T extends FloatArray = FloatArray> {
  readonly rows: number;
  readonly cols: number;
  readonly data: T;
}

export type Matrix32 = Matrix<Float32Array>;
export type Matrix64 = Matrix<Float64Array>;

export function dtypeOf(data: FloatArray): DType {
  return data instanceof Float64Array ? "float64" : "float32";
}

/** Allocates a zero matrix `[rows, cols]` of the given element type. */
export function zeros(rows: number, cols: number, dtype: "float32"): Matrix32;
export function zeros(rows: number, cols: number, dtype: "float64"): Matrix64;
export function zeros(rows: number, cols: number, dtype: DType): Matrix;
export function zeros(rows: number, cols: number, dtype: DType): Matrix {
  const size = rows * cols;
  const data = dtype === "float64" ? new Float64Array(size) : new Float32Array(size);
  return { rows, cols, data };
}

/** Wraps existing row-major data as `[rows, cols]` after checking its length. */
export function matrix<T extends FloatArray>(rows: number, cols: number, data: T): Matrix<T> {
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 0 || cols < 0) {
    throw new RangeError(
      `invalid matrix shape [${rows}, ${cols}]: dimensions must be integers >= 0`,
    );
  }
  if (data.length !== rows * cols) {
    throw new RangeError(
      `matrix data has ${data.length} elements but shape [${rows}, ${cols}] needs ${rows * cols}`,
    );
  }
  return { rows, cols, data };
}

export function clone<T extends FloatArray>(a: Matrix<T>): Matrix<T> {
  return { rows: a.rows, cols: a.cols, data: a.data.slice() as T };
}

/** Converts to the requested element type, copying only when it differs. */
export function cast(a: Matrix, dtype: "float32"): Matrix32;
export function cast(a: Matrix, dtype: "float64"): Matrix64;
export function cast(a: Matrix, dtype: DType): Matrix;
export function cast(a: Matrix, dtype: DType): Matrix {
  if (dtypeOf(a.data) === dtype) return a;
  const data = dtype === "float64" ? Float64Array.from(a.data) : Float32Array.from(a.data);
  return { rows: a.rows, cols: a.cols, data };
}

/** Returns `A^T` as a new `[cols, rows]` matrix. */
export function transpose<T extends FloatArray>(a: Matrix<T>): Matrix<T> {
  const out = new (a.data.constructor as { new (n: number): T })(a.data.length);
  const { rows, cols, data } = a;
  // Blocked to stay within cache lines on both sides.
  const block = 64;
  for (let i0 = 0; i0 < rows; i0 += block) {
    const i1 = Math.min(i0 + block, rows);
    for (let j0 = 0; j0 < cols; j0 += block) {
      const j1 = Math.min(j0 + block, cols);
      for (let i = i0; i < i1; i++) {
        for (let j = j0; j < j1; j++) out[j * rows + i] = data[i * cols + j];
      }
    }
  }
  return { rows: cols, cols: rows, data: out };
}

/** Copies the rows listed in `indices`, in that order, into `[indices.length, cols]`. */
export function selectRows<T extends FloatArray>(
  a: Matrix<T>,
  indices: ArrayLike<number>,
): Matrix<T> {
  const out = new (a.data.constructor as { new (n: number): T })(indices.length * a.cols);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    out.set(a.data.subarray(i * a.cols, (i + 1) * a.cols), k * a.cols);
  }
  return { rows: indices.length, cols: a.cols, data: out };
}

/** Frobenius norm, accumulated in float64. */
export function frobeniusNorm(a: Matrix): number {
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) sum += a.data[i] * a.data[i];
  return Math.sqrt(sum);
}

/** `||A - B||_F`, accumulated in float64; shapes must match. */
export function frobeniusDistance(a: Matrix, b: Matrix): number {
  if (a.rows !== b.rows || a.cols !== b.cols) {
    throw new RangeError(`shape mismatch: [${a.rows}, ${a.cols}] vs [${b.rows}, ${b.cols}]`);
  }
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = a.data[i] - b.data[i];
    sum += d * d;
  }
  return Math.sqrt(sum);
}

/** Index of the first NaN or infinite element, or -1 when all are finite. */
export function firstNonFinite(data: FloatArray): number {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) return i;
  }
  return -1;
}
