/** Rebuilds compressed layers from a downloaded artifact in float64, to check the report's errors. */

import { BufferByteSource } from "../../src/checkpoint/byte-source.ts";
import { type Checkpoint, openCheckpoint } from "../../src/checkpoint/checkpoint.ts";

/** Opens downloaded `model.safetensors` bytes as a checkpoint. */
export async function openArtifact(bytes: Uint8Array): Promise<Checkpoint> {
  return openCheckpoint([{ name: "model.safetensors", source: new BufferByteSource(bytes) }]);
}

async function readPivots(artifact: Checkpoint, name: string): Promise<Int32Array> {
  const bytes = await artifact.readTensorBytes(name);
  const copy = new Uint8Array(bytes); // aligned copy for the Int32Array view
  return new Int32Array(copy.buffer, 0, copy.byteLength / 4);
}

/**
 * Rebuilds `W'` `[m, n]` of one PIFA layer from `<prefix>.pivot_rows` `[r, n]`,
 * `<prefix>.coefficients` `[m - r, r]` and `<prefix>.pivots` `[r]`: pivot rows go to the rows
 * listed in `pivots`, and each remaining row (ascending) is its coefficient row times the pivot rows.
 */
export async function rebuildPifaLayer(
  artifact: Checkpoint,
  prefix: string,
  m: number,
  n: number,
): Promise<Float64Array> {
  const pivotRows = await artifact.readTensorFloat32(`${prefix}.pivot_rows`); // [r, n]
  const coefficients = await artifact.readTensorFloat32(`${prefix}.coefficients`); // [m - r, r]
  const pivots = await readPivots(artifact, `${prefix}.pivots`); // [r]
  const r = pivots.length;
  const isPivot = new Uint8Array(m);
  for (const row of pivots) isPivot[row] = 1;
  const rest: number[] = [];
  for (let row = 0; row < m; row++) if (!isPivot[row]) rest.push(row);

  const out = new Float64Array(m * n); // [m, n]
  for (let l = 0; l < r; l++) {
    for (let j = 0; j < n; j++) out[pivots[l] * n + j] = pivotRows[l * n + j];
  }
  for (let k = 0; k < rest.length; k++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let l = 0; l < r; l++) sum += coefficients[k * r + l] * pivotRows[l * n + j];
      out[rest[k] * n + j] = sum;
    }
  }
  return out;
}

/** `||W - W'||_F / ||W||_F` in float64. */
export function relativeError(original: Float32Array, rebuilt: Float64Array): number {
  let difference = 0;
  let norm = 0;
  for (let i = 0; i < original.length; i++) {
    const d = original[i] - rebuilt[i];
    difference += d * d;
    norm += original[i] * original[i];
  }
  return Math.sqrt(difference / norm);
}
