import { describe, expect, it } from "vitest";
import type { DType, FloatArray, Matrix } from "../src/linalg/matrix.ts";
import { checkOpenblasCoreType, configuredThreadCount } from "../src/native/environment.ts";
import * as native from "../src/native/index.ts";
import { NativeError, type NativeErrorCode } from "../src/native/index.ts";
import { loadAddon } from "../src/native/load.ts";
import { SerialQueue } from "../src/native/queue.ts";

// ---- float64 references ----------------------------------------------------

/** Deterministic uniform generator in [0, 1) (mulberry32). */
function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeArray(dtype: DType, length: number): FloatArray {
  return dtype === "float64" ? new Float64Array(length) : new Float32Array(length);
}

/** Entries uniform in [-1, 1). */
function randomMatrix(rows: number, cols: number, seed: number, dtype: DType): Matrix {
  const next = rng(seed);
  const data = makeArray(dtype, rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = 2 * next() - 1;
  return { rows, cols, data };
}

function fromRows(rows: number[][], dtype: DType): Matrix {
  const cols = rows[0]?.length ?? 0;
  const data = makeArray(dtype, rows.length * cols);
  rows.forEach((row, i) => {
    row.forEach((value, j) => {
      data[i * cols + j] = value;
    });
  });
  return { rows: rows.length, cols, data };
}

function at(a: Matrix, i: number, j: number): number {
  return a.data[i * a.cols + j];
}

/** `op(A) op(B)` in float64. */
function matmul(a: Matrix, b: Matrix, transA = false, transB = false): Matrix {
  const m = transA ? a.cols : a.rows;
  const k = transA ? a.rows : a.cols;
  const n = transB ? b.rows : b.cols;
  const out = new Float64Array(m * n); // [m, n]
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) {
        const x = transA ? at(a, p, i) : at(a, i, p);
        const y = transB ? at(b, j, p) : at(b, p, j);
        sum += x * y;
      }
      out[i * n + j] = sum;
    }
  }
  return { rows: m, cols: n, data: out };
}

/** Symmetric positive definite `A A^T + n I` `[n, n]`. */
function spdMatrix(n: number, seed: number, dtype: DType): Matrix {
  const a = randomMatrix(n, n, seed, "float64");
  const gram = matmul(a, a, false, true);
  const data = makeArray(dtype, n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) data[i * n + j] = gram.data[i * n + j] + (i === j ? n : 0);
  }
  return { rows: n, cols: n, data };
}

/** Returns `X` with `A X = B` by Gaussian elimination with partial pivoting. */
function solveReference(a: Matrix, b: Matrix): Matrix {
  const n = a.rows;
  const k = b.cols;
  const m = Array.from({ length: n }, (_, i) => [
    ...Array.from({ length: n }, (_, j) => at(a, i, j)),
    ...Array.from({ length: k }, (_, j) => at(b, i, j)),
  ]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let row = col + 1; row < n; row++) {
      if (Math.abs(m[row][col]) > Math.abs(m[pivot][col])) pivot = row;
    }
    [m[col], m[pivot]] = [m[pivot], m[col]];
    for (let row = 0; row < n; row++) {
      if (row === col) continue;
      const factor = m[row][col] / m[col][col];
      for (let j = col; j < n + k; j++) m[row][j] -= factor * m[col][j];
    }
  }
  const x = new Float64Array(n * k); // [n, k]
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) x[i * k + j] = m[i][n + j] / m[i][i];
  }
  return { rows: n, cols: k, data: x };
}

function identity(n: number): Matrix {
  const data = new Float64Array(n * n);
  for (let i = 0; i < n; i++) data[i * n + i] = 1;
  return { rows: n, cols: n, data };
}

function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let max = 0;
  for (let i = 0; i < actual.length; i++) max = Math.max(max, Math.abs(actual[i] - expected[i]));
  return max;
}

/** Absolute tolerance for entries of size about `scale`, by element type. */
function tolerance(dtype: DType, scale = 1): number {
  return (dtype === "float32" ? 5e-4 : 1e-10) * scale;
}

function expectMatrixClose(actual: Matrix, expected: Matrix, tol: number): void {
  expect([actual.rows, actual.cols]).toEqual([expected.rows, expected.cols]);
  expect(maxAbsDiff(actual.data, expected.data)).toBeLessThan(tol);
}

function expectDType(array: FloatArray, dtype: DType): void {
  expect(array).toBeInstanceOf(dtype === "float64" ? Float64Array : Float32Array);
}

async function expectNativeError(
  promise: Promise<unknown>,
  code: NativeErrorCode,
  messagePart?: string,
): Promise<NativeError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(NativeError);
  const nativeError = error as NativeError;
  expect(nativeError.code).toBe(code);
  if (messagePart !== undefined) expect(nativeError.message).toContain(messagePart);
  return nativeError;
}

// ---- operations, both element types ------------------------------------------

describe.each(["float32", "float64"] as const)("native %s", (dtype) => {
  const tol = tolerance(dtype, 10);

  it("gemm matches reference for every transpose", async () => {
    const a = randomMatrix(7, 5, 1, dtype); // [7, 5]
    const b = randomMatrix(5, 6, 2, dtype); // [5, 6]
    const at_ = randomMatrix(5, 7, 3, dtype); // [5, 7] used as A^T
    const bt = randomMatrix(6, 5, 4, dtype); // [6, 5] used as B^T

    const plain = await native.gemm(a, b);
    expectDType(plain.data, dtype);
    expectMatrixClose(plain, matmul(a, b), tol);
    expectMatrixClose(await native.gemm(at_, b, { transA: true }), matmul(at_, b, true), tol);
    expectMatrixClose(await native.gemm(a, bt, { transB: true }), matmul(a, bt, false, true), tol);
    expectMatrixClose(
      await native.gemm(at_, bt, { transA: true, transB: true }),
      matmul(at_, bt, true, true),
      tol,
    );
  });

  it("gemm applies alpha, beta and C", async () => {
    const a = randomMatrix(4, 3, 5, dtype);
    const b = randomMatrix(3, 2, 6, dtype);
    const c = randomMatrix(4, 2, 7, dtype);
    const product = matmul(a, b);
    const expected = product.data.map((value, i) => 2 * value - 0.5 * c.data[i]);

    const result = await native.gemm(a, b, { alpha: 2, c, beta: -0.5 });
    expect(maxAbsDiff(result.data, expected)).toBeLessThan(tol);

    // beta defaults to 1 when C is given.
    const accumulated = await native.gemm(a, b, { c });
    const sum = product.data.map((value, i) => value + c.data[i]);
    expect(maxAbsDiff(accumulated.data, sum)).toBeLessThan(tol);
  });

  it("syrk fills both triangles either way", async () => {
    const a = randomMatrix(7, 5, 8, dtype); // [7, 5]

    const outer = await native.syrk(a); // A A^T [7, 7]
    expectDType(outer.data, dtype);
    expectMatrixClose(outer, matmul(a, a, false, true), tol);

    const inner = await native.syrk(a, { trans: true }); // A^T A [5, 5]
    expectMatrixClose(inner, matmul(a, a, true, false), tol);
    for (let i = 0; i < 5; i++) {
      for (let j = 0; j < 5; j++) expect(at(inner, i, j)).toBe(at(inner, j, i));
    }
  });

  it("syrk applies alpha, beta and C", async () => {
    const a = randomMatrix(3, 4, 9, dtype); // [3, 4]
    const c = spdMatrix(4, 10, dtype); // symmetric [4, 4]
    const gram = matmul(a, a, true, false);
    const expected = gram.data.map((value, i) => 3 * value + 2 * c.data[i]);

    const result = await native.syrk(a, { trans: true, alpha: 3, c, beta: 2 });
    expect(maxAbsDiff(result.data, expected)).toBeLessThan(tolerance(dtype, 100));
  });

  it("syrk with dtype float64 computes in float64", async () => {
    const a = randomMatrix(9, 4, 15, dtype); // [9, 4]
    const a64: Matrix = { rows: 9, cols: 4, data: Float64Array.from(a.data) }; // [9, 4]
    const c = spdMatrix(4, 16, "float64") as Matrix<Float64Array>; // symmetric [4, 4]

    // Widening is exact, so the result is the same dsyrk on the same values.
    const inner = await native.syrk(a, { trans: true, alpha: 3, c, beta: 2, dtype: "float64" });
    expectDType(inner.data, "float64");
    const inner64 = await native.syrk(a64, { trans: true, alpha: 3, c, beta: 2 });
    expect(maxAbsDiff(inner.data, inner64.data)).toBe(0);

    const outer = await native.syrk(a, { dtype: "float64" }); // A A^T [9, 9]
    expect([outer.rows, outer.cols]).toEqual([9, 9]);
    expect(maxAbsDiff(outer.data, (await native.syrk(a64)).data)).toBe(0);
  });

  it("cholesky reconstructs A with lower L", async () => {
    const a = spdMatrix(32, 11, dtype);
    const l = await native.cholesky(a);
    expectDType(l.data, dtype);
    for (let i = 0; i < 32; i++) {
      for (let j = i + 1; j < 32; j++) expect(at(l, i, j)).toBe(0);
    }
    expectMatrixClose(matmul(l, l, false, true), a, tolerance(dtype, 100));
  });

  it("trsm solves on both sides", async () => {
    const l = await native.cholesky(spdMatrix(6, 12, dtype)); // lower [6, 6]
    const bLeft = randomMatrix(6, 4, 13, dtype); // [6, 4]
    const bRight = randomMatrix(3, 6, 14, dtype); // [3, 6]

    // L X = 2 B
    const left = await native.trsm(l, bLeft, { side: "left", lower: true, alpha: 2 });
    expectDType(left.data, dtype);
    const scaledLeft = bLeft.data.map((value) => 2 * value);
    expect(maxAbsDiff(matmul(l, left).data, scaledLeft)).toBeLessThan(tol);

    // X L^T = B
    const right = await native.trsm(l, bRight, { side: "right", lower: true, transA: true });
    expect(maxAbsDiff(matmul(right, l, false, true).data, bRight.data)).toBeLessThan(tol);

    // Upper triangular: U = L^T, U X = B with a unit diagonal ignores U's diagonal.
    const u = matmul(l, identity(6), true, false); // L^T [6, 6]
    const unit = await native.trsm(
      { ...u, data: Float64Array.from(u.data) },
      {
        ...bLeft,
        data: Float64Array.from(bLeft.data),
      },
      { side: "left", lower: false, unitDiagonal: true },
    );
    const uUnit = Float64Array.from(u.data);
    for (let i = 0; i < 6; i++) uUnit[i * 6 + i] = 1;
    const check = matmul({ rows: 6, cols: 6, data: uUnit }, unit);
    expect(maxAbsDiff(check.data, bLeft.data)).toBeLessThan(tolerance("float64", 100));
  });

  it("eigh reconstructs A with ascending values", async () => {
    const a = spdMatrix(32, 15, dtype);
    const { values, vectors } = await native.eigh(a);
    expectDType(values, dtype);
    expectDType(vectors.data, dtype);
    expect([vectors.rows, vectors.cols]).toEqual([32, 32]);
    for (let i = 1; i < 32; i++) expect(values[i]).toBeGreaterThanOrEqual(values[i - 1]);

    // A = V diag(w) V^T with eigenvectors as columns.
    const scaled = new Float64Array(32 * 32); // V diag(w)
    for (let i = 0; i < 32; i++) {
      for (let j = 0; j < 32; j++) scaled[i * 32 + j] = at(vectors, i, j) * values[j];
    }
    const rebuilt = matmul({ rows: 32, cols: 32, data: scaled }, vectors, false, true);
    expectMatrixClose(rebuilt, a, tolerance(dtype, 1000));
    expectMatrixClose(matmul(vectors, vectors, true, false), identity(32), tol);
  });

  it.each([
    [7, 5],
    [5, 7],
    [32, 32],
  ])("svd reconstructs a [%i, %i] matrix", async (m, n) => {
    const a = randomMatrix(m, n, 16 + m, dtype);
    const k = Math.min(m, n);
    const { u, s, vt } = await native.svd(a);
    expect([u.rows, u.cols]).toEqual([m, k]);
    expect(s.length).toBe(k);
    expect([vt.rows, vt.cols]).toEqual([k, n]);
    expectDType(s, dtype);
    for (let i = 1; i < k; i++) expect(s[i]).toBeLessThanOrEqual(s[i - 1]);
    expect(s[k - 1]).toBeGreaterThanOrEqual(0);

    const us = new Float64Array(m * k); // U diag(s)
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < k; j++) us[i * k + j] = at(u, i, j) * s[j];
    }
    expectMatrixClose(matmul({ rows: m, cols: k, data: us }, vt), a, tol);
    expectMatrixClose(matmul(u, u, true, false), identity(k), tol);
    expectMatrixClose(matmul(vt, vt, false, true), identity(k), tol);
  });

  it.each([
    [7, 5],
    [5, 7],
  ])("qr factors a [%i, %i] matrix", async (m, n) => {
    const a = randomMatrix(m, n, 20 + m, dtype);
    const k = Math.min(m, n);
    const { q, r } = await native.qr(a);
    expect([q.rows, q.cols]).toEqual([m, k]);
    expect([r.rows, r.cols]).toEqual([k, n]);
    expectDType(q.data, dtype);
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < i; j++) expect(at(r, i, j)).toBe(0);
    }
    expectMatrixClose(matmul(q, q, true, false), identity(k), tol);
    expectMatrixClose(matmul(q, r), a, tol);

    const rOnly = await native.qr(a, { wantQ: false });
    expect("q" in rOnly).toBe(false);
    expect(maxAbsDiff(rOnly.r.data, r.data)).toBe(0);
  });

  it.each([
    [7, 5],
    [5, 7],
  ])("qrPivoted orders a [%i, %i] matrix", async (m, n) => {
    const a = randomMatrix(m, n, 30 + m, dtype);
    const k = Math.min(m, n);
    const { r, pivots } = await native.qrPivoted(a);
    expect([r.rows, r.cols]).toEqual([k, n]);
    expect(pivots).toBeInstanceOf(Int32Array);
    expect([...pivots].sort((x, y) => x - y)).toEqual([...Array(n).keys()]);
    for (let i = 1; i < k; i++) {
      expect(Math.abs(at(r, i, i))).toBeLessThanOrEqual(Math.abs(at(r, i - 1, i - 1)) * (1 + 1e-6));
    }

    // A P has column j equal to column pivots[j] of A, and R^T R = (A P)^T (A P).
    const ap = new Float64Array(m * n); // [m, n]
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) ap[i * n + j] = at(a, i, pivots[j]);
    }
    const apMatrix = { rows: m, cols: n, data: ap };
    expectMatrixClose(matmul(r, r, true, false), matmul(apMatrix, apMatrix, true, false), tol);
  });

  it("luSolve matches elimination", async () => {
    const a = randomMatrix(32, 32, 40, dtype);
    const b = randomMatrix(32, 3, 41, dtype);
    const x = await native.luSolve(a, b);
    expectDType(x.data, dtype);
    expect([x.rows, x.cols]).toEqual([32, 3]);
    expect(maxAbsDiff(matmul(a, x).data, b.data)).toBeLessThan(tolerance(dtype, 100));
    expect(maxAbsDiff(x.data, solveReference(a, b).data)).toBeLessThan(tolerance(dtype, 1000));
  });

  it("leastSquares solves tall systems", async () => {
    const a = randomMatrix(7, 5, 42, dtype); // [7, 5]
    const b = randomMatrix(7, 2, 43, dtype); // [7, 2]
    const x = await native.leastSquares(a, b);
    expectDType(x.data, dtype);
    expect([x.rows, x.cols]).toEqual([5, 2]);
    // Normal equations: A^T A X = A^T B.
    const expected = solveReference(matmul(a, a, true, false), matmul(a, b, true, false));
    expect(maxAbsDiff(x.data, expected.data)).toBeLessThan(tol);
  });

  it("leastSquares returns the minimum-norm wide solution", async () => {
    const a = randomMatrix(5, 7, 44, dtype); // [5, 7]
    const b = randomMatrix(5, 2, 45, dtype); // [5, 2]
    const x = await native.leastSquares(a, b);
    expect([x.rows, x.cols]).toEqual([7, 2]);
    // Minimum norm: X = A^T (A A^T)^-1 B.
    const y = solveReference(matmul(a, a, false, true), b);
    expect(maxAbsDiff(x.data, matmul(a, y, true, false).data)).toBeLessThan(tol);
    expect(maxAbsDiff(matmul(a, x).data, b.data)).toBeLessThan(tol);
  });
});

// ---- inputs are copied ---------------------------------------------------------

describe("native input handling", () => {
  it("leaves caller arrays unchanged", async () => {
    const a = randomMatrix(6, 6, 50, "float64");
    const spd = spdMatrix(6, 51, "float64");
    const b = randomMatrix(6, 2, 52, "float64");
    const c = randomMatrix(6, 6, 53, "float64");
    const inputs = [a, spd, b, c];
    const before = inputs.map((m) => Float64Array.from(m.data));

    await native.gemm(a, spd, { c, beta: 2 });
    await native.syrk(a, { c: spd });
    await native.cholesky(spd);
    await native.trsm(spd, b, { side: "left", lower: true });
    await native.eigh(spd);
    await native.svd(a);
    await native.qr(a);
    await native.qrPivoted(a);
    await native.luSolve(a, b);
    await native.leastSquares(a, b);

    inputs.forEach((m, index) => {
      expect(maxAbsDiff(m.data, before[index])).toBe(0);
    });
  });

  it("copies inputs at call time", async () => {
    const a = randomMatrix(8, 6, 54, "float64");
    const expected = (await native.svd(a)).s;
    // Queue a call behind another, then overwrite the input before either runs.
    const blocker = native.svd(randomMatrix(64, 64, 55, "float64"));
    const pending = native.svd(a);
    a.data.fill(0);
    await blocker;
    const { s } = await pending;
    expect(maxAbsDiff(s, expected)).toBe(0);
  });

  it("runs concurrent calls in order", async () => {
    const matrices = [1, 2, 3, 4].map((seed) => randomMatrix(5, 4, 60 + seed, "float64"));
    const results = await Promise.all(matrices.map((m) => native.gemm(m, m, { transB: true })));
    results.forEach((result, index) => {
      const m = matrices[index];
      expectMatrixClose(result, matmul(m, m, false, true), 1e-12);
    });
  });

  it("handles zero-size matrices", async () => {
    const empty = (rows: number, cols: number): Matrix => ({
      rows,
      cols,
      data: new Float64Array(rows * cols),
    });

    const noRows = await native.gemm(empty(0, 3), randomMatrix(3, 2, 70, "float64"));
    expect([noRows.rows, noRows.cols, noRows.data.length]).toEqual([0, 2, 0]);
    const noInner = await native.gemm(empty(2, 0), empty(0, 3));
    expect([noInner.rows, noInner.cols]).toEqual([2, 3]);
    expect([...noInner.data]).toEqual([0, 0, 0, 0, 0, 0]);

    const gram = await native.syrk(empty(3, 0));
    expect([...gram.data]).toEqual(new Array(9).fill(0));
    expect((await native.cholesky(empty(0, 0))).data.length).toBe(0);
    const spectrum = await native.eigh(empty(0, 0));
    expect(spectrum.values.length).toBe(0);

    const wideSvd = await native.svd(empty(0, 4));
    expect([wideSvd.u.rows, wideSvd.u.cols, wideSvd.s.length]).toEqual([0, 0, 0]);
    expect([wideSvd.vt.rows, wideSvd.vt.cols]).toEqual([0, 4]);

    const thin = await native.qr(empty(3, 0));
    expect([thin.q.rows, thin.q.cols, thin.r.rows, thin.r.cols]).toEqual([3, 0, 0, 0]);
    const pivoted = await native.qrPivoted(empty(0, 3));
    expect([...pivoted.pivots]).toEqual([0, 1, 2]);
    expect([pivoted.r.rows, pivoted.r.cols]).toEqual([0, 3]);

    const solved = await native.luSolve(empty(0, 0), empty(0, 2));
    expect([solved.rows, solved.cols]).toEqual([0, 2]);
    const minimal = await native.leastSquares(empty(0, 3), empty(0, 2));
    expect([minimal.rows, minimal.cols]).toEqual([3, 2]);
    expect([...minimal.data]).toEqual([0, 0, 0, 0, 0, 0]);
    const triangular = await native.trsm(identity(2), empty(2, 0), { side: "left", lower: true });
    expect([triangular.rows, triangular.cols]).toEqual([2, 0]);
  });
});

// ---- typed errors ----------------------------------------------------------

describe("native errors", () => {
  const a = randomMatrix(4, 4, 80, "float64");

  it("rejects mismatched data length", async () => {
    const bad = { rows: 4, cols: 4, data: new Float64Array(15) };
    const error = await expectNativeError(native.svd(bad), "INVALID_SHAPE", "needs 16 elements");
    expect(error.operation).toBe("svd");
    expect(error.message).toMatch(/^svd: matrix A \[4, 4\]/);
  });

  it("rejects invalid and overflowing dimensions", async () => {
    await expectNativeError(
      native.qr({ rows: 2 ** 31, cols: 1, data: new Float64Array(0) }),
      "INVALID_SHAPE",
      "[0, 2147483647]",
    );
    await expectNativeError(
      native.qr({ rows: 2 ** 31 - 1, cols: 2 ** 31 - 1, data: new Float64Array(1) }),
      "INVALID_SHAPE",
      "needs 4611686014132420609 elements",
    );
    await expectNativeError(
      native.qr({ rows: 1.5, cols: 2, data: new Float64Array(3) }),
      "INVALID_SHAPE",
    );
    await expectNativeError(
      native.qr({ rows: -1, cols: 2, data: new Float64Array(0) }),
      "INVALID_SHAPE",
    );
    const notTyped = { rows: 1, cols: 2, data: [1, 2] } as unknown as Matrix;
    await expectNativeError(native.qr(notTyped), "INVALID_SHAPE", "Float32Array or Float64Array");
    await expectNativeError(native.qr(null as unknown as Matrix), "INVALID_SHAPE");
  });

  it("rejects oversized results", async () => {
    const tall = { rows: 100_000, cols: 0, data: new Float32Array(0) }; // [1e5, 0]
    const wide = { rows: 0, cols: 100_000, data: new Float32Array(0) }; // [0, 1e5]
    await expectNativeError(native.gemm(tall, wide), "INVALID_SHAPE", "more than a typed array");
    await expectNativeError(native.syrk(tall), "INVALID_SHAPE", "more than a typed array");
  });

  it("rejects mismatched shapes", async () => {
    await expectNativeError(
      native.gemm(a, randomMatrix(3, 2, 81, "float64")),
      "INVALID_SHAPE",
      "inner dimensions differ",
    );
    await expectNativeError(
      native.gemm(a, a, { c: randomMatrix(3, 3, 82, "float64") }),
      "INVALID_SHAPE",
      "matrix C",
    );
    await expectNativeError(
      native.luSolve(a, randomMatrix(3, 1, 83, "float64")),
      "INVALID_SHAPE",
      "must have 4 rows",
    );
    await expectNativeError(
      native.trsm(a, randomMatrix(4, 3, 84, "float64"), { side: "right", lower: true }),
      "INVALID_SHAPE",
      "side 'right'",
    );
  });

  it("rejects mixed element types", async () => {
    const single = randomMatrix(4, 4, 85, "float32");
    await expectNativeError(
      native.gemm(a, single),
      "DTYPE_MISMATCH",
      "float64 but matrix B is float32",
    );
    await expectNativeError(native.leastSquares(single, a), "DTYPE_MISMATCH");
    await expectNativeError(
      native.syrk(single, {
        c: randomMatrix(4, 4, 86, "float32") as unknown as Matrix<Float64Array>,
        dtype: "float64",
      }),
      "DTYPE_MISMATCH",
      "convert C to float64",
    );
  });

  it("rejects non-square matrices", async () => {
    const rect = randomMatrix(4, 3, 86, "float64");
    const message = "matrix A [4, 3] must be square";
    await expectNativeError(native.cholesky(rect), "INVALID_SHAPE", message);
    await expectNativeError(native.eigh(rect), "INVALID_SHAPE", message);
    await expectNativeError(native.luSolve(rect, rect), "INVALID_SHAPE", message);
  });

  it("rejects non-finite input naming the matrix", async () => {
    const withNaN = randomMatrix(3, 3, 87, "float32");
    withNaN.data[5] = Number.NaN;
    const error = await expectNativeError(native.svd(withNaN), "NON_FINITE", "matrix A [3, 3]");
    expect(error.message).toContain("NaN at (1, 2)");

    const withInf = randomMatrix(3, 2, 88, "float64");
    withInf.data[0] = Number.POSITIVE_INFINITY;
    await expectNativeError(
      native.leastSquares(randomMatrix(3, 3, 89, "float64"), withInf),
      "NON_FINITE",
      "matrix B [3, 2] contains Infinity",
    );
    await expectNativeError(native.gemm(a, a, { alpha: Number.NaN }), "NON_FINITE", "alpha");
  });

  it("reports a matrix that is not positive definite", async () => {
    const indefinite = fromRows(
      [
        [1, 2, 0],
        [2, 1, 0],
        [0, 0, 1],
      ],
      "float64",
    );
    const error = await expectNativeError(
      native.cholesky(indefinite),
      "NOT_POSITIVE_DEFINITE",
      "cholesky: matrix A [3, 3] is not positive definite (leading minor 2 is not positive; LAPACK dpotrf info=2)",
    );
    expect(error.info).toBe(2);
  });

  it("reports singular matrices", async () => {
    const singular = fromRows(
      [
        [1, 2],
        [2, 4],
      ],
      "float32",
    );
    const error = await expectNativeError(
      native.luSolve(singular, fromRows([[1], [2]], "float32")),
      "SINGULAR_MATRIX",
      "LAPACK sgesv info=2",
    );
    expect(error.info).toBe(2);

    const zeroDiagonal = fromRows(
      [
        [1, 0],
        [3, 0],
      ],
      "float64",
    );
    await expectNativeError(
      native.trsm(zeroDiagonal, identity(2), { side: "left", lower: true }),
      "SINGULAR_MATRIX",
      "diagonal element (1, 1) is zero",
    );
  });

  it("rejects invalid options", async () => {
    const options = { side: "up", lower: true } as unknown as native.TrsmOptions;
    await expectNativeError(native.trsm(a, a, options), "INVALID_ARGUMENT", "side");
    await expectNativeError(native.gemm(a, a, { beta: 2 }), "INVALID_ARGUMENT", "without matrix c");
    const flag = { transA: "yes" } as unknown as native.GemmOptions;
    await expectNativeError(native.gemm(a, a, flag), "INVALID_ARGUMENT", "transA");
    const narrowing = { dtype: "float32" } as unknown as native.Float64SyrkOptions;
    await expectNativeError(native.syrk(a, narrowing), "INVALID_ARGUMENT", "option dtype");
  });
});

// ---- runtime -------------------------------------------------------------------

describe("native runtime", () => {
  it("binds BLAS and LAPACK symbols to OpenBLAS", () => {
    const info = native.blasInfo();
    expect(info.config).toContain("OpenBLAS");
    expect(info.corename.length).toBeGreaterThan(0);
    expect(info.threads).toBeGreaterThanOrEqual(1);
    for (const symbol of ["sgemm_", "cblas_sgemm", "sgesdd_", "dgeqp3_", "ssyevd_", "dgelsd_"]) {
      expect(info.symbols[symbol], symbol).toMatch(/libopenblas/);
    }
  });

  it("sets and reports the thread count", async () => {
    const original = native.getThreads();
    try {
      native.setThreads(1);
      expect(native.getThreads()).toBe(1);
      const a = randomMatrix(16, 16, 90, "float64");
      expectMatrixClose(await native.gemm(a, a), matmul(a, a), 1e-12);
      expect(native.blasInfo().threads).toBe(1);
    } finally {
      native.setThreads(original);
    }
    expect(() => native.setThreads(0)).toThrow(NativeError);
    expect(() => native.setThreads(1.5)).toThrow(NativeError);
  });

  it("keeps the event loop responsive during svd", async () => {
    const a = randomMatrix(1024, 1024, 91, "float32");
    let last = performance.now();
    let maxGap = 0;
    let ticks = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks += 1;
    }, 5);
    try {
      const { s } = await native.svd(a);
      expect(s.length).toBe(1024);
      expect(s[0]).toBeGreaterThan(s[1023]);
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(0);
    expect(maxGap).toBeLessThan(50);
  });

  it("reports a missing addon as NATIVE_LIBRARY_MISSING", () => {
    let caught: unknown;
    try {
      loadAddon("../../build/Release/does_not_exist.node", {});
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(NativeError);
    expect((caught as NativeError).code).toBe("NATIVE_LIBRARY_MISSING");
    expect((caught as NativeError).message).toContain(
      "apt-get install libopenblas-dev liblapacke-dev",
    );
  });
});

describe("native environment", () => {
  const avx2Only = new Set(["sse2", "avx", "avx2", "fma"]);

  it("rejects a core type the CPU cannot run", () => {
    expect(() => checkOpenblasCoreType("SkylakeX", avx2Only)).toThrow(/avx512f/);
    expect(() => checkOpenblasCoreType("cooperlake", avx2Only)).toThrow(NativeError);
  });

  it("accepts supported, old and unknown core types", () => {
    expect(() => checkOpenblasCoreType("Haswell", avx2Only)).not.toThrow();
    expect(() => checkOpenblasCoreType("Prescott", avx2Only)).not.toThrow();
    expect(() => checkOpenblasCoreType("NoSuchCore", avx2Only)).not.toThrow();
    expect(() => checkOpenblasCoreType(undefined, avx2Only)).not.toThrow();
  });

  it("reads PIFA_BLAS_THREADS", () => {
    expect(configuredThreadCount({ PIFA_BLAS_THREADS: "3" })).toBe(3);
    expect(configuredThreadCount({})).toBeGreaterThanOrEqual(1);
    expect(() => configuredThreadCount({ PIFA_BLAS_THREADS: "0" })).toThrow(/positive integer/);
    expect(() => configuredThreadCount({ PIFA_BLAS_THREADS: "two" })).toThrow(NativeError);
  });
});

describe("SerialQueue", () => {
  it("runs one task at a time in order", async () => {
    const queue = new SerialQueue();
    const order: number[] = [];
    let running = 0;
    let maxRunning = 0;
    const task = (id: number, delayMs: number) => async () => {
      running += 1;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      order.push(id);
      running -= 1;
      if (id === 2) throw new Error("task 2 failed");
      return id;
    };
    const results = await Promise.allSettled([
      queue.run(task(1, 20)),
      queue.run(task(2, 1)),
      queue.run(task(3, 1)),
    ]);
    expect(order).toEqual([1, 2, 3]);
    expect(maxRunning).toBe(1);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(queue.pending).toBe(0);
  });
});
