/**
 * Data-aware compression (svd-llm, m, mpifa): runs the model over the
 * calibration sequences layer by layer and fits each targeted linear to the
 * activations it really sees.
 *
 * Two activation streams pass through each decoder layer: the dense stream
 * (the original model) and, for M, the compressed stream (the model
 * compressed so far). Inside a layer the linears are fitted in forward order
 * by input group, {q, k, v}, {o}, {gate, up}, {down}, and the compressed
 * stream switches to each refit group before the next group's inputs are
 * computed. Memory holds one decoder layer, the two streams, and per group
 * `G`, `H` `[n, n]` and `C` `[m, n]` per linear.
 */

import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import type { Checkpoint } from "../../src/checkpoint/checkpoint.ts";
import { assertFinite } from "../../src/checkpoint/finite.ts";
import { decodeFloat32 } from "../../src/checkpoint/float-codec.ts";
import type { SafetensorsWriter } from "../../src/checkpoint/writer.ts";
import { CompressionError } from "../../src/compression/errors.ts";
import type { CompressionOptions } from "../../src/compression/options.ts";
import { cast, type Matrix32 } from "../../src/linalg/matrix.ts";
import {
  applyLinear,
  attentionContext,
  attentionInput,
  DECODER_LINEARS,
  type DecoderLayer,
  type DecoderLinearName,
  decoderLinearPrefix,
  defaultPositions,
  embed,
  type Linear,
  loadDecoderLayer,
  loadEmbedding,
  type ModelSpec,
  mlpHidden,
  mlpInput,
  residualAfterAttention,
  residualAfterMlp,
} from "../../src/model/index.ts";
import { refitPair } from "../../src/numerics/m-update.ts";
import { restIndices } from "../../src/numerics/pifa.ts";
import { whitenedSvd } from "../../src/numerics/whiten.ts";
import { encodeLayer, type LayerReport } from "./layer.ts";
import type { EncodedLayer, LayerStore } from "./layer-store.ts";
import type { CompressionPlan, LayerPlan, PlanStep } from "./plan.ts";
import { accumulateStatistics, type GroupStatistics, mStatistics } from "./statistics.ts";

/** Linear groups that share an input, in forward order. */
export const LINEAR_GROUPS: readonly (readonly DecoderLinearName[])[] = [
  ["q", "k", "v"],
  ["o"],
  ["gate", "up"],
  ["down"],
];

const DECODER_TARGET = /^model\.layers\.(\d+)\.(.+)\.weight$/;

export interface DataAwareInput {
  checkpoint: Checkpoint;
  spec: ModelSpec;
  options: CompressionOptions;
  plan: CompressionPlan;
  calibration: readonly Int32Array[];
  writer: SafetensorsWriter;
  /** Called after every group of linears. */
  onGroup: (report: LayerReport[]) => Promise<void>;
  signal?: AbortSignal;
  logger?: Logger;
  layerStore?: LayerStore;
}

/** Decoder layer index of a tensor name, or -1 for tensors outside the layers. */
export function layerIndexOf(name: string): number {
  const match = /^model\.layers\.(\d+)\./.exec(name);
  return match ? Number(match[1]) : -1;
}

/**
 * Maps each targeted weight to its layer and linear name; a target outside
 * the decoder projections cannot be fitted on activations and is rejected.
 */
export function decoderTargets(
  plan: CompressionPlan,
): Map<number, Map<DecoderLinearName, LayerPlan>> {
  const modules = new Map<string, DecoderLinearName>(
    Object.entries(DECODER_LINEARS).map(([name, module]) => [module, name as DecoderLinearName]),
  );
  const byLayer = new Map<number, Map<DecoderLinearName, LayerPlan>>();
  for (const layer of plan.layers) {
    const match = DECODER_TARGET.exec(layer.source.name);
    const linear = match ? modules.get(match[2]) : undefined;
    if (!match || !linear) {
      throw new CompressionError(
        "METHOD_NOT_AVAILABLE",
        `data-aware methods fit only decoder projections (q/k/v/o/gate/up/down_proj); target "${layer.source.name}" is not one: exclude it or use "pifa" or "svd"`,
        "options.targets",
      );
    }
    const index = Number(match[1]);
    if (!byLayer.has(index)) byLayer.set(index, new Map());
    byLayer.get(index)?.set(linear, layer);
  }
  return byLayer;
}

/**
 * Write order for data-aware jobs: tensors outside the decoder layers first,
 * then each layer's tensors together in layer order, so a layer is written
 * as soon as it is fitted whatever the source file's order.
 */
export function orderByLayer(steps: readonly PlanStep[]): PlanStep[] {
  const key = (step: PlanStep) =>
    layerIndexOf(step.kind === "copy" ? step.source.name : step.layer.source.name);
  return steps
    .map((step, position) => ({ step, position, layer: key(step) }))
    .sort((x, y) => x.layer - y.layer || x.position - y.position)
    .map(({ step }) => step);
}

function denseWeight(linear: Linear): Matrix32 {
  if (linear.kind !== "dense") {
    throw new CompressionError(
      "METHOD_NOT_AVAILABLE",
      "the source checkpoint is already compressed: data-aware methods need dense weights",
    );
  }
  return linear.weight;
}

async function mapSequences<T>(
  items: readonly T[],
  fn: (item: T, index: number) => Promise<Matrix32>,
) {
  const out: Matrix32[] = [];
  for (let i = 0; i < items.length; i++) out.push(await fn(items[i], i));
  return out;
}

export async function compressWithCalibration(input: DataAwareInput): Promise<LayerReport[]> {
  const { checkpoint, spec, options, plan, writer, signal, logger } = input;
  const refit = options.method === "m" || options.method === "mpifa";
  const targets = decoderTargets(plan);
  const steps = orderByLayer(plan.steps);
  const reports: LayerReport[] = [];

  const writeSteps = async (layerIndex: number, encoded: Map<string, EncodedLayer>) => {
    for (const step of steps) {
      const name = step.kind === "copy" ? step.source.name : step.layer.source.name;
      if (layerIndexOf(name) !== layerIndex) continue;
      if (step.kind === "copy") {
        await writer.writeTensor(name, await checkpoint.readTensorBytes(step.source));
        continue;
      }
      const result = encoded.get(name);
      if (!result) throw new Error(`layer ${name} was planned but not fitted`);
      for (const tensor of result.tensors) await writer.writeTensor(tensor.name, tensor.bytes);
    }
  };

  await writeSteps(-1, new Map());
  const embedding = await loadEmbedding(checkpoint, spec);
  let dense = input.calibration.map((tokens) => embed(embedding, tokens)); // [T_s, hidden] each
  let compressed = dense;

  for (let index = 0; index < spec.numLayers; index++) {
    const layer: DecoderLayer = await loadDecoderLayer(checkpoint, spec, index);
    const layerTargets = targets.get(index) ?? new Map<DecoderLinearName, LayerPlan>();
    const fitted: DecoderLayer = { ...layer, linears: { ...layer.linears } };
    const encoded = new Map<string, EncodedLayer>();

    const fitGroup = async (
      group: readonly DecoderLinearName[],
      xDense: Matrix32[],
      xCompressed: Matrix32[],
    ) => {
      const members = group.filter((name) => layerTargets.has(name));
      if (members.length === 0) return;
      if (signal?.aborted)
        throw new CompressionError("CANCELLED", "compression cancelled between layers");
      const started = performance.now();
      const weights = new Map<string, Matrix32>();
      for (const name of members) {
        const w = denseWeight(layer.linears[name]);
        assertFinite(decoderLinearPrefix(index, name), w.data, [w.rows, w.cols]);
        weights.set(name, w);
      }
      const saved = new Map<DecoderLinearName, EncodedLayer>();
      for (const name of members) {
        const found = await input.layerStore?.load(
          (layerTargets.get(name) as LayerPlan).source.name,
        );
        if (found) saved.set(name, found);
      }
      // A group restored in full from an earlier attempt needs no statistics.
      const statistics =
        saved.size === members.length
          ? undefined
          : await accumulateStatistics(weights, xDense, xCompressed, {
              refit,
              lambda: options.lambda,
            });
      const groupReports: LayerReport[] = [];
      for (const name of members) {
        const plan = layerTargets.get(name) as LayerPlan;
        let result = saved.get(name);
        if (!result) {
          const stats = statistics as GroupStatistics;
          const w = weights.get(name) as Matrix32;
          let { a, b } = await whitenedSvd(w, stats.gram, plan.rank, { dtype: "float64" });
          if (refit) {
            ({ a, b } = await refitPair(mStatistics(stats, name, w), a, b, {
              steps: options.steps,
              ridge: options.ridge,
            }));
          }
          result = await encodeLayer(
            plan.source.name,
            w,
            cast(a, "float32"),
            cast(b, "float32"),
            plan.representation,
            plan.outputDtype,
            started,
          );
          await input.layerStore?.save(plan.source.name, result);
          logger?.debug(
            { layer: plan.source.name, rank: plan.rank, tokens: stats.tokens },
            "layer fitted",
          );
        }
        // The compressed stream runs what is stored, so a resumed job
        // continues exactly as an uninterrupted one would.
        fitted.linears[name] = linearFromEncoded(result, layer.linears[name].bias);
        encoded.set(plan.source.name, result);
        groupReports.push(result.report);
      }
      reports.push(...groupReports);
      await input.onGroup(groupReports);
    };

    // {q, k, v}: inputs are the normalized hidden states.
    const xDense = await mapSequences(dense, (h) => attentionInput(layer, h));
    const xCompressed = refit
      ? await mapSequences(compressed, (h) => attentionInput(fitted, h))
      : xDense;
    await fitGroup(LINEAR_GROUPS[0], xDense, xCompressed);

    // {o}: inputs are the attention contexts.
    const context = async (model: DecoderLayer, x: Matrix32) =>
      attentionContext(
        model,
        spec,
        await applyLinear(model.linears.q, x),
        await applyLinear(model.linears.k, x),
        await applyLinear(model.linears.v, x),
        defaultPositions(x.rows),
      );
    const ctxDense = await mapSequences(xDense, (x) => context(layer, x));
    const ctxCompressed = refit
      ? await mapSequences(xCompressed, (x) => context(fitted, x))
      : ctxDense;
    await fitGroup(LINEAR_GROUPS[1], ctxDense, ctxCompressed);

    // {gate, up}: inputs are the normalized hidden states after attention.
    const h2Dense = await mapSequences(ctxDense, async (ctx, s) =>
      residualAfterAttention(dense[s], await applyLinear(layer.linears.o, ctx)),
    );
    const h2Compressed = refit
      ? await mapSequences(ctxCompressed, async (ctx, s) =>
          residualAfterAttention(compressed[s], await applyLinear(fitted.linears.o, ctx)),
        )
      : h2Dense;
    const x2Dense = await mapSequences(h2Dense, (h2) => mlpInput(layer, h2));
    const x2Compressed = refit
      ? await mapSequences(h2Compressed, (h2) => mlpInput(fitted, h2))
      : x2Dense;
    await fitGroup(LINEAR_GROUPS[2], x2Dense, x2Compressed);

    // {down}: inputs are the SwiGLU hidden states.
    const swiglu = async (model: DecoderLayer, x2: Matrix32) =>
      mlpHidden(await applyLinear(model.linears.gate, x2), await applyLinear(model.linears.up, x2));
    const zDense = await mapSequences(x2Dense, (x2) => swiglu(layer, x2));
    const zCompressed = refit
      ? await mapSequences(x2Compressed, (x2) => swiglu(fitted, x2))
      : zDense;
    await fitGroup(LINEAR_GROUPS[3], zDense, zCompressed);

    dense = await mapSequences(zDense, async (z, s) =>
      residualAfterMlp(h2Dense[s], await applyLinear(layer.linears.down, z)),
    );
    compressed = refit
      ? await mapSequences(zCompressed, async (z, s) =>
          residualAfterMlp(h2Compressed[s], await applyLinear(fitted.linears.down, z)),
        )
      : dense;
    await writeSteps(index, encoded);
  }
  return reports;
}

/** Rebuilds a forward-pass linear from its stored tensors (PIFA or a pair). */
export function linearFromEncoded(encoded: EncodedLayer, bias: Float32Array | undefined): Linear {
  const find = (suffix: string) => {
    const tensor = encoded.tensors.find((t) => t.name.endsWith(`.${suffix}`));
    if (!tensor) throw new Error(`encoded layer ${encoded.report.name} has no ${suffix} tensor`);
    return tensor;
  };
  const matrix = (suffix: string): Matrix32 => {
    const tensor = find(suffix);
    const [rows, cols] = tensor.shape;
    return { rows, cols, data: decodeFloat32(tensor.bytes, tensor.dtype) };
  };
  if (encoded.report.representation === "low-rank") {
    return { kind: "low-rank", a: matrix("u"), b: matrix("v"), bias };
  }
  const pivotRows = matrix("pivot_rows"); // [r, n]
  const coefficients = matrix("coefficients"); // [m - r, r]
  const pivotBytes = find("pivots").bytes;
  const pivots = new Int32Array(
    pivotBytes.buffer.slice(pivotBytes.byteOffset, pivotBytes.byteOffset + pivotBytes.byteLength),
  );
  const m = pivotRows.rows + coefficients.rows;
  const rest = restIndices(pivots, m);
  return {
    kind: "pifa",
    layer: { pivotRows, coefficients, pivots, rest, rows: m, maxAbsCoefficient: Number.NaN },
    bias,
  };
}
