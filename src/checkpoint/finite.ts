import { type FloatArray, firstNonFinite } from "../linalg/matrix.ts";
import { CheckpointError, quote } from "./errors.ts";

/**
 * Raises NON_FINITE_TENSOR when `data` contains NaN or Inf. Call it on every
 * tensor chosen for compression, because one NaN spreads through a
 * factorization and ruins the whole layer.
 */
export function assertFinite(name: string, data: FloatArray, shape?: readonly number[]): void {
  const index = firstNonFinite(data);
  if (index < 0) return;

  let position = `index ${index}`;
  if (shape !== undefined && shape.length === 2 && shape[1] > 0) {
    const row = Math.floor(index / shape[1]);
    const column = index % shape[1];
    position += ` (row ${row}, column ${column} of shape [${shape.join(", ")}])`;
  }
  throw new CheckpointError(
    "NON_FINITE_TENSOR",
    `tensor ${quote(name)} contains ${data[index]} at ${position}: the checkpoint is corrupt or diverged, so fix or re-export it, or exclude this tensor from compression`,
  );
}
