/**
 * Compression options shared by the CLI, the HTTP API and the worker. One zod
 * schema validates them everywhere, so a bad value gets the same message
 * whichever door it came through.
 */

import { z } from "zod";

export const METHODS = ["svd", "pifa", "svd-llm", "m", "mpifa"] as const;
export type Method = (typeof METHODS)[number];

/** Methods that need calibration activations (run the model forward). */
export const DATA_AWARE_METHODS: readonly Method[] = ["svd-llm", "m", "mpifa"];

export const OUTPUT_DTYPES = ["same", "f32", "f16", "bf16"] as const;
export type OutputDtype = (typeof OUTPUT_DTYPES)[number];

/** Smallest shard the writer accepts: below this an index lists thousands of files. */
export const MIN_SHARD_BYTES = 1 << 20;

const glob = z
  .string()
  .min(1, "glob must not be empty")
  .max(512, "glob must be at most 512 characters");

export const compressionOptionsSchema = z
  .object({
    method: z.enum(METHODS, {
      error: () => `method must be one of ${METHODS.join(", ")}`,
    }),
    density: z
      .number({
        error: (issue) =>
          issue.input === undefined
            ? "density is missing: give the fraction of parameters to keep, a number in (0, 1] such as 0.5"
            : "density must be a number in (0, 1]",
      })
      .gt(0, "density must be greater than 0")
      .lte(1, "density must be at most 1"),
    rankMultiple: z
      .number()
      .int("rankMultiple must be an integer")
      .min(1, "rankMultiple must be at least 1")
      .max(1024, "rankMultiple must be at most 1024")
      .optional(),
    targets: z
      .array(glob)
      .min(
        1,
        "targets must list at least one glob: leave targets out to compress every linear layer",
      )
      .max(64, "at most 64 target globs")
      .optional(),
    exclude: z.array(glob).max(64, "at most 64 exclude globs").optional(),
    dtype: z
      .enum(OUTPUT_DTYPES, { error: () => `dtype must be one of ${OUTPUT_DTYPES.join(", ")}` })
      .default("same"),
    shardBytes: z
      .number()
      .int("shardBytes must be an integer")
      .min(MIN_SHARD_BYTES, `shardBytes must be at least ${MIN_SHARD_BYTES}`)
      .optional(),
    /** Mix of original-model outputs in the M targets. */
    lambda: z
      .number({ error: "lambda must be a number from 0 to 1" })
      .min(0, "lambda must be at least 0")
      .max(1, "lambda must be at most 1")
      .default(0.25),
    /** Alternating A/B rounds of M. */
    steps: z
      .number({ error: "steps must be an integer from 1 to 20" })
      .int("steps must be an integer from 1 to 20")
      .min(1, "steps must be at least 1")
      .max(20, "steps must be at most 20")
      .default(2),
    /** Ridge added to H in the M B step. */
    ridge: z
      .number({ error: "ridge must be a number in (0, 1], such as 0.001" })
      .gt(0, "ridge must be greater than 0, such as 0.001")
      .max(1, "ridge must be at most 1")
      .default(1e-3),
    /** Calibration sequences to use (the first N). */
    calibrationSequences: z
      .number({ error: "calibrationSequences must be an integer from 1 to 100000" })
      .int("calibrationSequences must be an integer")
      .min(1, "calibrationSequences must be at least 1")
      .max(100_000, "calibrationSequences must be at most 100000")
      .optional(),
    /** Truncate calibration and evaluation sequences to this many tokens. */
    sequenceLength: z
      .number({ error: "sequenceLength must be an integer from 2 to 1000000" })
      .int("sequenceLength must be an integer")
      .min(2, "sequenceLength must be at least 2")
      .max(1_000_000, "sequenceLength must be at most 1000000")
      .optional(),
  })
  .strict();

export type CompressionOptions = z.output<typeof compressionOptionsSchema>;
export type CompressionOptionsInput = z.input<typeof compressionOptionsSchema>;

export function isDataAware(method: Method): boolean {
  return DATA_AWARE_METHODS.includes(method);
}

/** Representation each method stores. */
export function representationOf(method: Method): "pifa" | "low-rank" {
  return method === "pifa" || method === "mpifa" ? "pifa" : "low-rank";
}

export interface OptionsIssue {
  field: string;
  message: string;
}

/** Validates untrusted options; returns the first problem with its field path. */
export function parseCompressionOptions(
  input: unknown,
): { ok: true; options: CompressionOptions } | { ok: false; issue: OptionsIssue } {
  const result = compressionOptionsSchema.safeParse(input);
  if (result.success) return { ok: true, options: result.data };
  const first = result.error.issues[0];
  const field = first.path.length > 0 ? `options.${first.path.join(".")}` : "options";
  let message = first.message;
  if (first.path.length === 0 && first.code === "invalid_type") {
    message = 'options must be a JSON object, such as {"method":"pifa","density":0.5}';
  } else if (first.code === "unrecognized_keys") {
    message = `unknown option ${first.keys.map((k) => JSON.stringify(k)).join(", ")}; known options: ${Object.keys(compressionOptionsSchema.shape).join(", ")}`;
  }
  return { ok: false, issue: { field, message } };
}
