/**
 * Codes the worker records in a failed job's `error` when the failure is not about the input.
 * Input failures keep the code of the checkpoint or compression error that caused them.
 */
export const JOB_ERRORS = {
  /** An infrastructure error (storage, Redis, native code) outlasted every retry. */
  COMPRESSION_FAILED: "Compression failed after every retry; the message names the last error.",
  /** The worker running the job stopped without finishing it (crash or lost lock) too many times. */
  WORKER_LOST: "The worker running this job stopped responding; submit the job again.",
} as const;

export type JobErrorCode = keyof typeof JOB_ERRORS;
