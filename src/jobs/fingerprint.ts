import { createHash } from "node:crypto";
import type { CompressionOptions } from "../compression/options.ts";
import type { JobInputs, StoredInput } from "./model.ts";

/** JSON with object keys sorted at every level, so equal values always give equal text. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function describeInput(part: string, input: StoredInput): Record<string, unknown> {
  return { part, name: input.name, size: input.size, sha256: input.sha256 };
}

/**
 * Hex SHA-256 that identifies a submission for `Idempotency-Key`: the validated options (defaults
 * filled in) plus each input's part, name, size and SHA-256. Storage keys are left out because
 * each upload gets new ones. For a `source` job the prefix replaces the upload, and sizes replace
 * the unknown checksums.
 */
export function requestFingerprint(options: CompressionOptions, inputs: JobInputs): string {
  const parts = [
    ...inputs.checkpoint.map((input) => describeInput("checkpoint", input)),
    describeInput("config", inputs.config),
    ...(inputs.calibration ? [describeInput("calibration", inputs.calibration)] : []),
    ...(inputs.evaluation ? [describeInput("evaluation", inputs.evaluation)] : []),
  ].sort((a, b) => (canonicalJson(a) < canonicalJson(b) ? -1 : 1));
  const text = canonicalJson({ options, source: inputs.source, parts });
  return createHash("sha256").update(text).digest("hex");
}
