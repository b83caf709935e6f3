/**
 * Reads tensors for the forward pass: float vectors and matrices with shape
 * checks, tied-name aliases, and linear layers. A linear comes from an
 * ordinary checkpoint (`X.weight`) or from a compressed artifact:
 * `X.pivot_rows`, `X.coefficients` and `X.pivots` for PIFA, or `X.u` and
 * `X.v` for a low-rank pair (docs/artifact-format.md).
 */

import type { Checkpoint, CheckpointTensor } from "../checkpoint/checkpoint.ts";
import { CheckpointError, quote } from "../checkpoint/errors.ts";
import { assertFinite } from "../checkpoint/finite.ts";
import type { Matrix32 } from "../linalg/matrix.ts";
import { type PifaLayer, restIndices } from "../numerics/pifa.ts";
import { ModelError } from "./errors.ts";
import { TimeSlice } from "./event-loop.ts";
import type { Linear } from "./linear.ts";

/** Shape `[m, n]` a linear's weight must have. */
export interface LinearShape {
  outputs: number;
  inputs: number;
}

/**
 * Finds a stored tensor by name, following `__metadata__` aliases: when
 * `safetensors.torch.save_model` drops one tensor of a tied pair, it records
 * the dropped name as a key whose value is the stored name.
 */
export function findTensor(checkpoint: Checkpoint, name: string): CheckpointTensor | undefined {
  const stored = checkpoint.getTensor(name);
  if (stored !== undefined) return stored;
  const alias = checkpoint.metadata[name];
  return alias === undefined ? undefined : checkpoint.getTensor(alias);
}

function requireTensor(checkpoint: Checkpoint, name: string, purpose: string): CheckpointTensor {
  const tensor = findTensor(checkpoint, name);
  if (tensor === undefined) {
    throw new ModelError(
      "MISSING_WEIGHT",
      `tensor ${quote(name)} (${purpose}) is missing from the checkpoint: upload every shard of a LLaMA-family model in Hugging Face layout`,
      name,
    );
  }
  return tensor;
}

function checkShape(tensor: CheckpointTensor, expected: readonly number[], purpose: string): void {
  const matches =
    tensor.shape.length === expected.length &&
    tensor.shape.every((size, axis) => size === expected[axis]);
  if (!matches) {
    throw new ModelError(
      "INVALID_WEIGHT",
      `tensor ${quote(tensor.name)} (${purpose}) has shape [${tensor.shape.join(", ")}] but config.json implies [${expected.join(", ")}]: upload the config.json that belongs to these weights`,
      tensor.name,
    );
  }
}

async function readFloats(checkpoint: Checkpoint, tensor: CheckpointTensor): Promise<Float32Array> {
  const data = await checkpoint.readTensorFloat32(tensor);
  assertFinite(tensor.name, data, tensor.shape);
  return data;
}

/** Finds a tensor and checks its shape from the header; raises MISSING_WEIGHT or INVALID_WEIGHT. */
export function locateTensor(
  checkpoint: Checkpoint,
  name: string,
  shape: readonly number[],
  purpose: string,
): CheckpointTensor {
  const tensor = requireTensor(checkpoint, name, purpose);
  checkShape(tensor, shape, purpose);
  return tensor;
}

/** Reads a float vector `[length]`, such as a norm weight or a bias. */
export async function readVector(
  checkpoint: Checkpoint,
  name: string,
  length: number,
  purpose: string,
): Promise<Float32Array> {
  return readFloats(checkpoint, locateTensor(checkpoint, name, [length], purpose));
}

/** Reads a float matrix `[rows, cols]`. */
export async function readMatrix(
  checkpoint: Checkpoint,
  name: string,
  rows: number,
  cols: number,
  purpose: string,
): Promise<Matrix32> {
  const tensor = locateTensor(checkpoint, name, [rows, cols], purpose);
  return { rows, cols, data: await readFloats(checkpoint, tensor) };
}

function invalidArtifact(prefix: string, detail: string): CheckpointError {
  return new CheckpointError("INVALID_ARTIFACT", `module ${quote(prefix)}: ${detail}`);
}

/** Reads `X.pivots` (I32) and checks they are ascending distinct indices in `[0, m)`. */
async function readPivots(
  checkpoint: Checkpoint,
  tensor: CheckpointTensor,
  m: number,
  prefix: string,
): Promise<Int32Array> {
  const bytes = await checkpoint.readTensorBytes(tensor);
  const pivots = new Int32Array(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  );
  for (let i = 0; i < pivots.length; i++) {
    if (pivots[i] < 0 || pivots[i] >= m || (i > 0 && pivots[i] <= pivots[i - 1])) {
      throw invalidArtifact(
        prefix,
        `pivots must be ascending distinct indices in [0, ${m}), found ${pivots[i]} at position ${i}`,
      );
    }
  }
  return pivots;
}

/** Location of a linear's tensors, found and shape-checked from the header alone. */
export type LinearSource =
  | { kind: "dense"; weight: CheckpointTensor; bias?: CheckpointTensor }
  | {
      kind: "pifa";
      pivotRows: CheckpointTensor;
      coefficients: CheckpointTensor;
      pivots: CheckpointTensor;
      bias?: CheckpointTensor;
    }
  | { kind: "low-rank"; u: CheckpointTensor; v: CheckpointTensor; bias?: CheckpointTensor };

function locatePifa(
  checkpoint: Checkpoint,
  prefix: string,
  shape: LinearShape,
  pivotRows: CheckpointTensor,
): { pivotRows: CheckpointTensor; coefficients: CheckpointTensor; pivots: CheckpointTensor } {
  const coefficients = checkpoint.getTensor(`${prefix}.coefficients`);
  const pivots = checkpoint.getTensor(`${prefix}.pivots`);
  if (coefficients === undefined || pivots === undefined) {
    throw invalidArtifact(prefix, "a PIFA layer needs pivot_rows, coefficients and pivots");
  }
  const { outputs: m, inputs: n } = shape;
  const rank = pivotRows.shape[0];
  if (pivotRows.shape.length !== 2 || rank === undefined || rank < 1 || rank > m) {
    throw invalidArtifact(
      prefix,
      `pivot_rows has shape [${pivotRows.shape.join(", ")}]; expected [rank, ${n}] with 1 <= rank <= ${m}`,
    );
  }
  checkShape(pivotRows, [rank, n], "PIFA pivot rows");
  checkShape(coefficients, [m - rank, rank], "PIFA coefficients");
  checkShape(pivots, [rank], "PIFA pivots");
  if (pivots.dtype !== "I32") {
    throw invalidArtifact(prefix, `pivots has dtype ${pivots.dtype}; expected I32`);
  }
  return { pivotRows, coefficients, pivots };
}

function locateLowRank(
  checkpoint: Checkpoint,
  prefix: string,
  shape: LinearShape,
  u: CheckpointTensor,
): { u: CheckpointTensor; v: CheckpointTensor } {
  const v = checkpoint.getTensor(`${prefix}.v`);
  if (v === undefined) throw invalidArtifact(prefix, "a low-rank layer needs u and v");
  const rank = u.shape[1];
  if (u.shape.length !== 2 || rank === undefined || rank < 1) {
    throw invalidArtifact(
      prefix,
      `u has shape [${u.shape.join(", ")}]; expected [${shape.outputs}, rank]`,
    );
  }
  checkShape(u, [shape.outputs, rank], "low-rank factor u");
  checkShape(v, [rank, shape.inputs], "low-rank factor v");
  return { u, v };
}

/**
 * Finds the tensors of the linear whose names start with `prefix` (e.g.
 * `model.layers.0.self_attn.q_proj`) and checks their shapes from the
 * header alone: `X.weight` when present, else the PIFA triple, else the
 * u/v pair. With `withBias`, `X.bias` `[m]` is required.
 */
export function locateLinear(
  checkpoint: Checkpoint,
  prefix: string,
  shape: LinearShape,
  withBias: boolean,
): LinearSource {
  const bias = withBias
    ? locateTensor(checkpoint, `${prefix}.bias`, [shape.outputs], "bias")
    : undefined;

  const weight = findTensor(checkpoint, `${prefix}.weight`);
  if (weight !== undefined) {
    checkShape(weight, [shape.outputs, shape.inputs], "weight");
    return { kind: "dense", weight, bias };
  }
  const pivotRows = checkpoint.getTensor(`${prefix}.pivot_rows`);
  if (pivotRows !== undefined) {
    return { kind: "pifa", ...locatePifa(checkpoint, prefix, shape, pivotRows), bias };
  }
  const u = checkpoint.getTensor(`${prefix}.u`);
  if (u !== undefined) {
    return { kind: "low-rank", ...locateLowRank(checkpoint, prefix, shape, u), bias };
  }
  throw new ModelError(
    "MISSING_WEIGHT",
    `module ${quote(prefix)} has no weight: expected ${prefix}.weight, or ${prefix}.pivot_rows/coefficients/pivots, or ${prefix}.u/v in a compressed artifact`,
    `${prefix}.weight`,
  );
}

async function readTensorMatrix(
  checkpoint: Checkpoint,
  tensor: CheckpointTensor,
): Promise<Matrix32> {
  const [rows, cols] = tensor.shape;
  return { rows, cols, data: await readFloats(checkpoint, tensor) };
}

/**
 * Returns the largest `|value|` of a matrix, yielding between rows so that a
 * large one does not block the event loop.
 */
async function maxAbsolute(matrix: Matrix32): Promise<number> {
  const slice = new TimeSlice();
  let max = 0;
  for (let row = 0; row < matrix.rows; row++) {
    const end = (row + 1) * matrix.cols;
    for (let i = row * matrix.cols; i < end; i++) max = Math.max(max, Math.abs(matrix.data[i]));
    if (slice.due()) await slice.pause();
  }
  return max;
}

async function readPifaLayer(
  checkpoint: Checkpoint,
  prefix: string,
  source: Extract<LinearSource, { kind: "pifa" }>,
): Promise<PifaLayer> {
  const pivotRows = await readTensorMatrix(checkpoint, source.pivotRows); // [r, n]
  const coefficients = await readTensorMatrix(checkpoint, source.coefficients); // [m - r, r]
  const rank = pivotRows.rows;
  const m = rank + coefficients.rows;
  const pivots = await readPivots(checkpoint, source.pivots, m, prefix);
  const rest = restIndices(pivots, m);
  const maxAbsCoefficient = await maxAbsolute(coefficients);
  return { pivotRows, coefficients, pivots, rest, maxAbsCoefficient, rows: m };
}

/** Reads the tensors `locateLinear` found into a Linear. */
export async function readLinear(
  checkpoint: Checkpoint,
  prefix: string,
  source: LinearSource,
): Promise<Linear> {
  const bias = source.bias === undefined ? undefined : await readFloats(checkpoint, source.bias);
  switch (source.kind) {
    case "dense":
      return { kind: "dense", weight: await readTensorMatrix(checkpoint, source.weight), bias };
    case "pifa":
      return { kind: "pifa", layer: await readPifaLayer(checkpoint, prefix, source), bias };
    case "low-rank": {
      const a = await readTensorMatrix(checkpoint, source.u); // [m, r]
      const b = await readTensorMatrix(checkpoint, source.v); // [r, n]
      return { kind: "low-rank", a, b, bias };
    }
  }
}

/** Locates and reads one linear; see `locateLinear` for the layouts it accepts. */
export async function loadLinear(
  checkpoint: Checkpoint,
  prefix: string,
  shape: LinearShape,
  withBias: boolean,
): Promise<Linear> {
  return readLinear(checkpoint, prefix, locateLinear(checkpoint, prefix, shape, withBias));
}
