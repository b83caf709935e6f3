/**
 * Validating and queueing a submitted job, shared by uploads and `source` submissions. The
 * checkpoint is opened from storage by range reads and checked against the options before the job
 * exists, so a bad checkpoint is rejected synchronously and never reaches a worker.
 */

import { validateForCompression } from "../../workers/pipeline/compress.ts";
import { CompressionError } from "../compression/errors.ts";
import {
  type CompressionOptions,
  DATA_AWARE_METHODS,
  isDataAware,
} from "../compression/options.ts";
import { requestFingerprint } from "../jobs/fingerprint.ts";
import { openStoredCheckpoint, readStoredConfig, readStoredTokenData } from "../jobs/inputs.ts";
import { type JobInputs, type JobRecord, QUEUED_PROGRESS } from "../jobs/model.ts";
import type { ApiContext } from "./context.ts";
import { ApiError } from "./errors.ts";

export interface Submission {
  id: string;
  /** Tenant of the API key that submitted the job. */
  tenant: string;
  options: CompressionOptions;
  inputs: JobInputs;
  idempotencyKey?: string;
}

export interface SubmitResult {
  job: JobRecord;
  /** False when the `Idempotency-Key` returned a job created by an earlier request. */
  created: boolean;
}

/**
 * Throws the input error (4xx) that would fail the job: invalid checkpoint headers or config.json,
 * an empty target selection, a method without its calibration data, calibration data for a
 * method that does not read it, or invalid token data.
 */
async function validateInputs(context: ApiContext, submission: Submission): Promise<void> {
  const { options, inputs } = submission;
  const checkpoint = await openStoredCheckpoint(context.storage, inputs);
  try {
    const config = await readStoredConfig(context.storage, inputs.config);
    validateForCompression(checkpoint, options, {
      config,
      hasCalibration: inputs.calibration !== undefined,
      hasEvaluation: inputs.evaluation !== undefined,
    });
    if (inputs.calibration !== undefined && !isDataAware(options.method)) {
      throw new CompressionError(
        "UNUSED_INPUT",
        `method "${options.method}" does not read calibration data, so the calibration part would be ignored: drop it, or choose one of ${DATA_AWARE_METHODS.join(", ")}`,
        "calibration",
      );
    }
    await readStoredTokenData(context.storage, inputs, options, config);
  } finally {
    await checkpoint.close();
  }
}

/**
 * Validates the submission, stores the queued job and adds it to the queue. With an
 * `Idempotency-Key` already used for the same request, returns that earlier job instead.
 */
export async function submitJob(
  context: ApiContext,
  submission: Submission,
): Promise<SubmitResult> {
  await validateInputs(context, submission);

  const record: JobRecord = {
    id: submission.id,
    status: "queued",
    createdAt: new Date().toISOString(),
    startedAt: null,
    finishedAt: null,
    options: submission.options,
    progress: QUEUED_PROGRESS,
    inputs: submission.inputs,
    cancelRequested: false,
    attempts: 0,
    tenant: submission.tenant,
  };
  const fingerprint = requestFingerprint(submission.options, submission.inputs);
  // Tenant names contain no colon, so each tenant gets its own idempotency key space.
  const claim = submission.idempotencyKey
    ? { key: `${submission.tenant}:${submission.idempotencyKey}`, fingerprint }
    : undefined;
  const result = await context.store.create(record, claim);

  if (!result.created) {
    if (result.existingFingerprint !== fingerprint) throw new ApiError("IDEMPOTENCY_KEY_REUSED");
    const existing = await context.store.get(result.existingId);
    if (existing === undefined) throw new ApiError("JOB_NOT_FOUND");
    return { job: existing, created: false };
  }

  try {
    await context.queue.enqueue(record.id);
  } catch (error) {
    // Without a BullMQ job no worker would ever pick the record up, so drop it again.
    await context.store.delete(record.id);
    throw error;
  }
  return { job: record, created: true };
}
