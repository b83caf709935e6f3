/** `report.json`: what each compressed layer lost and saved, and the totals. */

import type { CompressionOptions } from "../../src/compression/options.ts";
import type { LayerReport } from "./layer.ts";
import { ARTIFACT_FORMAT_VERSION } from "./plan.ts";

export const REPORT_FILE_NAME = "report.json";

export interface PerplexityReport {
  perplexity: number;
  /** Mean negative log-likelihood per predicted token, in nats. */
  mean_nll: number;
}

export interface EvaluationReport {
  sequences: number;
  /** Predicted tokens: the sum of `length - 1` over the sequences. */
  tokens: number;
  original: PerplexityReport;
  compressed: PerplexityReport;
}

export interface CompressionReport {
  format_version: string;
  options: CompressionOptions;
  /** Calibration data used by the data-aware methods. */
  calibration?: { sequences: number; tokens: number };
  evaluation?: EvaluationReport;
  layers: LayerReport[];
  totals: {
    layers: number;
    /** Parameters of the targeted layers before compression. */
    params_before: number;
    params_after: number;
    /** `params_after / params_before` over the targeted layers. */
    density: number;
    /** Tensor bytes of the whole checkpoint, before and after. */
    bytes_before: number;
    bytes_after: number;
    seconds: number;
  };
}

export function buildReport(input: {
  options: CompressionOptions;
  layers: LayerReport[];
  bytesBefore: number;
  bytesAfter: number;
  seconds: number;
  calibration?: { sequences: number; tokens: number };
  evaluation?: EvaluationReport;
}): CompressionReport {
  const paramsBefore = input.layers.reduce((sum, layer) => sum + layer.params_before, 0);
  const paramsAfter = input.layers.reduce((sum, layer) => sum + layer.params_after, 0);
  const report: CompressionReport = {
    format_version: ARTIFACT_FORMAT_VERSION,
    options: input.options,
    layers: input.layers,
    totals: {
      layers: input.layers.length,
      params_before: paramsBefore,
      params_after: paramsAfter,
      density: paramsBefore === 0 ? 0 : paramsAfter / paramsBefore,
      bytes_before: input.bytesBefore,
      bytes_after: input.bytesAfter,
      seconds: input.seconds,
    },
  };
  if (input.calibration) report.calibration = input.calibration;
  if (input.evaluation) report.evaluation = input.evaluation;
  return report;
}
