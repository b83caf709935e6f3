/**
 * Reading of the optional arguments of the public functions. Matrices are
 * validated by the addon itself; these helpers reject option values of the
 * wrong type with INVALID_ARGUMENT before anything reaches native code.
 */

import type { Matrix } from "../linalg/matrix.ts";
import { NativeError } from "./errors.ts";

/** Returns `{}` for undefined and rejects anything that is not an object. */
export function readOptions<T extends object>(value: T | undefined, operation: string): Partial<T> {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object") {
    throw new NativeError("INVALID_ARGUMENT", operation, `${operation}: options must be an object`);
  }
  return value;
}

export function readFlag(
  value: unknown,
  name: string,
  operation: string,
  fallback: boolean,
): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new NativeError(
      "INVALID_ARGUMENT",
      operation,
      `${operation}: option ${name} must be a boolean, got ${describe(value)}`,
    );
  }
  return value;
}

/**
 * Reads an optional `dtype` option that may only be "float64": returns true
 * when the call must compute and return float64 whatever its input's type.
 */
export function readFloat64Result(value: unknown, operation: string): boolean {
  if (value === undefined) return false;
  if (value !== "float64") {
    throw new NativeError(
      "INVALID_ARGUMENT",
      operation,
      `${operation}: option dtype must be 'float64' or absent, got ${describe(value)}`,
    );
  }
  return true;
}

/** Reads a numeric scalar; finiteness is checked by the addon (NON_FINITE). */
export function readScalar(
  value: unknown,
  name: string,
  operation: string,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") {
    throw new NativeError(
      "INVALID_ARGUMENT",
      operation,
      `${operation}: option ${name} must be a number, got ${describe(value)}`,
    );
  }
  return value;
}

/**
 * Reads the optional accumulator C and its beta. beta defaults to 1 when C is
 * given, and is rejected without C because it would scale nothing.
 */
export function readAccumulator(
  c: Matrix | undefined,
  beta: unknown,
  operation: string,
): { c: Matrix | null; beta: number } {
  if (c === undefined || c === null) {
    if (beta !== undefined) {
      throw new NativeError(
        "INVALID_ARGUMENT",
        operation,
        `${operation}: option beta was given without matrix c; pass c or drop beta`,
      );
    }
    return { c: null, beta: 0 };
  }
  return { c, beta: readScalar(beta, "beta", operation, 1) };
}

function describe(value: unknown): string {
  if (typeof value === "string") return `'${value}'`;
  if (value === null || typeof value !== "object") return String(value);
  return Array.isArray(value) ? "an array" : "an object";
}
