/**
 * Expands a compressed artifact back into an ordinary dense checkpoint:
 * every `X.pivot_rows`/`X.coefficients`/`X.pivots` group or `X.u`/`X.v`
 * pair becomes `X.weight` again, in the position of the group's first
 * tensor; every other tensor is copied byte for byte.
 */

import { copyFile, mkdir, stat } from "node:fs/promises";
import path from "node:path";
import type { Checkpoint, CheckpointTensor } from "../../src/checkpoint/checkpoint.ts";
import { type FloatDtype, isFloatDtype } from "../../src/checkpoint/dtypes.ts";
import { CheckpointError, quote } from "../../src/checkpoint/errors.ts";
import { encodeFloat32 } from "../../src/checkpoint/float-codec.ts";
import { createSafetensorsWriter } from "../../src/checkpoint/writer.ts";
import type { Matrix32 } from "../../src/linalg/matrix.ts";
import * as native from "../../src/native/index.ts";
import { reconstructPifa, restIndices } from "../../src/numerics/pifa.ts";

const PIFA_PARTS = ["pivot_rows", "coefficients", "pivots"] as const;
const LOW_RANK_PARTS = ["u", "v"] as const;

interface Group {
  prefix: string;
  kind: "pifa" | "low-rank";
  parts: Map<string, CheckpointTensor>;
}

type Step = { kind: "copy"; tensor: CheckpointTensor } | { kind: "expand"; group: Group };

function splitName(name: string): { prefix: string; part: string } | undefined {
  const dot = name.lastIndexOf(".");
  if (dot <= 0) return undefined;
  return { prefix: name.slice(0, dot), part: name.slice(dot + 1) };
}

/** Groups the artifact's compressed tensors by module and checks their shapes. */
function planExpansion(checkpoint: Checkpoint): Step[] {
  const groups = new Map<string, Group>();
  const steps: Step[] = [];
  for (const tensor of checkpoint.tensors) {
    const split = splitName(tensor.name);
    const kind = !split
      ? undefined
      : (PIFA_PARTS as readonly string[]).includes(split.part)
        ? "pifa"
        : (LOW_RANK_PARTS as readonly string[]).includes(split.part)
          ? "low-rank"
          : undefined;
    if (!split || !kind) {
      steps.push({ kind: "copy", tensor });
      continue;
    }
    let group = groups.get(split.prefix);
    if (!group) {
      group = { prefix: split.prefix, kind, parts: new Map() };
      groups.set(split.prefix, group);
      steps.push({ kind: "expand", group });
    }
    if (group.kind !== kind) {
      throw new CheckpointError(
        "INVALID_ARTIFACT",
        `module ${quote(split.prefix)} mixes PIFA and low-rank tensors: the artifact is corrupt`,
      );
    }
    group.parts.set(split.part, tensor);
  }
  for (const group of groups.values()) checkGroup(group);
  return steps;
}

function checkGroup(group: Group): void {
  const expected = group.kind === "pifa" ? PIFA_PARTS : LOW_RANK_PARTS;
  for (const part of expected) {
    if (!group.parts.has(part)) {
      throw new CheckpointError(
        "INVALID_ARTIFACT",
        `module ${quote(group.prefix)} has no ${part} tensor: a ${group.kind} layer needs ${expected.join(", ")}`,
      );
    }
  }
  const shapeOf = (part: string) => (group.parts.get(part) as CheckpointTensor).shape;
  const fail = (detail: string) => {
    throw new CheckpointError("INVALID_ARTIFACT", `module ${quote(group.prefix)}: ${detail}`);
  };
  if (group.kind === "pifa") {
    const [r, n] = shapeOf("pivot_rows");
    const coefficients = shapeOf("coefficients");
    const pivots = shapeOf("pivots");
    if (shapeOf("pivot_rows").length !== 2 || coefficients.length !== 2 || pivots.length !== 1) {
      fail("pivot_rows and coefficients must be 2-D and pivots 1-D");
    }
    if (coefficients[1] !== r || pivots[0] !== r || n === undefined) {
      fail(
        `shapes pivot_rows [${r}, ${n}], coefficients [${coefficients}], pivots [${pivots}] do not agree on the rank`,
      );
    }
    if ((group.parts.get("pivots") as CheckpointTensor).dtype !== "I32") fail("pivots must be I32");
  } else {
    const u = shapeOf("u");
    const v = shapeOf("v");
    if (u.length !== 2 || v.length !== 2 || u[1] !== v[0]) {
      fail(`u [${u}] and v [${v}] do not chain`);
    }
  }
  for (const [part, tensor] of group.parts) {
    if (part !== "pivots" && !isFloatDtype(tensor.dtype)) {
      fail(`${part} has dtype ${tensor.dtype}; expected F32, F16 or BF16`);
    }
  }
}

function weightShape(group: Group): [number, number] {
  const shapeOf = (part: string) => (group.parts.get(part) as CheckpointTensor).shape;
  if (group.kind === "pifa") {
    const [r, n] = shapeOf("pivot_rows");
    return [r + shapeOf("coefficients")[0], n];
  }
  return [shapeOf("u")[0], shapeOf("v")[1]];
}

async function readMatrix(checkpoint: Checkpoint, tensor: CheckpointTensor): Promise<Matrix32> {
  const [rows, cols] = tensor.shape;
  return { rows, cols, data: await checkpoint.readTensorFloat32(tensor) };
}

/** Validates PIFA pivots: `r` distinct indices in `[0, m)`, ascending. */
function readPivots(bytes: Buffer, m: number, prefix: string): Int32Array {
  const pivots = new Int32Array(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  );
  for (let i = 0; i < pivots.length; i++) {
    if (pivots[i] < 0 || pivots[i] >= m || (i > 0 && pivots[i] <= pivots[i - 1])) {
      throw new CheckpointError(
        "INVALID_ARTIFACT",
        `module ${quote(prefix)}: pivots must be ascending distinct indices in [0, ${m}), found ${pivots[i]} at ${i}`,
      );
    }
  }
  return pivots;
}

/** Rebuilds one module's dense weight `[m, n]` as float32. */
export async function expandGroup(checkpoint: Checkpoint, group: Group): Promise<Matrix32> {
  const part = (name: string) => group.parts.get(name) as CheckpointTensor;
  if (group.kind === "low-rank") {
    const u = await readMatrix(checkpoint, part("u")); // [m, r]
    const v = await readMatrix(checkpoint, part("v")); // [r, n]
    return (await native.gemm(u, v)) as Matrix32;
  }
  const pivotRows = await readMatrix(checkpoint, part("pivot_rows")); // [r, n]
  const coefficients = await readMatrix(checkpoint, part("coefficients")); // [m - r, r]
  const m = pivotRows.rows + coefficients.rows;
  const pivots = readPivots(await checkpoint.readTensorBytes(part("pivots")), m, group.prefix);
  const rest = restIndices(pivots, m);
  return (await reconstructPifa({
    pivotRows,
    coefficients,
    pivots,
    rest,
    rows: m,
    maxAbsCoefficient: Number.NaN,
  })) as Matrix32;
}

export interface ExpandInput {
  artifact: Checkpoint;
  /** Directory of the artifact, to copy its config.json when present. */
  artifactDir?: string;
  outDir: string;
  maxShardBytes?: number;
}

/** Writes the dense checkpoint into `outDir`; returns the file names written. */
export async function expandArtifact(input: ExpandInput): Promise<string[]> {
  const { artifact, outDir } = input;
  const steps = planExpansion(artifact);
  const outputs = steps.map((step) => {
    if (step.kind === "copy") {
      return { name: step.tensor.name, dtype: step.tensor.dtype, shape: [...step.tensor.shape] };
    }
    const factor = step.group.kind === "pifa" ? "pivot_rows" : "u";
    const dtype = (step.group.parts.get(factor) as CheckpointTensor).dtype;
    return { name: `${step.group.prefix}.weight`, dtype, shape: weightShape(step.group) };
  });
  const metadata: Record<string, string> = {};
  for (const shard of artifact.shards.values()) Object.assign(metadata, shard.metadata);
  metadata["pifa.expanded"] = "true";

  await mkdir(outDir, { recursive: true });
  const writer = await createSafetensorsWriter({
    directory: outDir,
    tensors: outputs,
    metadata,
    maxShardBytes: input.maxShardBytes,
  });
  try {
    for (const [i, step] of steps.entries()) {
      if (step.kind === "copy") {
        await writer.writeTensor(step.tensor.name, await artifact.readTensorBytes(step.tensor));
        continue;
      }
      const weight = await expandGroup(artifact, step.group);
      await writer.writeTensor(
        outputs[i].name,
        encodeFloat32(weight.data, outputs[i].dtype as FloatDtype),
      );
    }
    const { files } = await writer.close();
    const written = [...files];
    if (input.artifactDir) {
      const config = path.join(input.artifactDir, "config.json");
      if (await stat(config).catch(() => undefined)) {
        await copyFile(config, path.join(outDir, "config.json"));
        written.push("config.json");
      }
    }
    return written;
  } catch (error) {
    await writer.abort();
    throw error;
  }
}
