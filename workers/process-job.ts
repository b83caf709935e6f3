/**
 * Runs one compression job for the BullMQ worker: marks it running, opens its checkpoint from
 * storage by range reads, runs the pipeline into a temporary directory, publishes the artifacts
 * and records the outcome. Progress is recorded after every layer, and the cancel flag is read in
 * the same Redis round trip. Finished layers are saved in storage, so a retried or handed-back
 * job resumes after them.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Job, UnrecoverableError, WaitingError } from "bullmq";
import type { Logger } from "pino";
import type { Checkpoint } from "../src/checkpoint/checkpoint.ts";
import { CompressionError } from "../src/compression/errors.ts";
import type { JobErrorCode } from "../src/jobs/errors.ts";
import { isInputError } from "../src/jobs/input-errors.ts";
import { openStoredCheckpoint, readStoredConfig, readStoredTokenData } from "../src/jobs/inputs.ts";
import { type JobProgress, jobStoragePrefix, progressOf } from "../src/jobs/model.ts";
import type { JobStore } from "../src/jobs/store.ts";
import type { Storage } from "../src/storage/types.ts";
import { compressCheckpoint } from "./pipeline/compress.ts";
import { publishArtifacts } from "./publish.ts";
import { savedLayersPrefix, storageLayerStore } from "./storage-layer-store.ts";

export interface JobRunnerOptions {
  store: JobStore;
  storage: Storage;
  logger: Logger;
  /** Directory for the per-job temporary artifact directories; defaults to the OS temp directory. */
  workDir?: string;
}

/** Reason the runner aborted the pipeline's signal. */
type StopReason = "cancel" | "deleted" | "shutdown";

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function now(): string {
  return new Date().toISOString();
}

/** State of one running job, kept so that `handBackAll` can abort it. */
interface RunningJob {
  controller: AbortController;
  reason: StopReason | undefined;
}

export class JobRunner {
  readonly #options: JobRunnerOptions;
  readonly #running = new Map<string, RunningJob>();
  #stopping = false;

  constructor(options: JobRunnerOptions) {
    this.#options = options;
  }

  /**
   * Asks every running job to stop at its next layer boundary and go back to the queue. Used on
   * shutdown: `Worker.close` then waits for the runs to return.
   */
  handBackAll(): void {
    this.#stopping = true;
    for (const run of this.#running.values()) {
      run.reason ??= "shutdown";
      run.controller.abort();
    }
  }

  /** BullMQ processor: resolves when the job is finished or skipped, throws to fail or retry it. */
  async process(
    job: Job,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const id = job.id;
    if (id === undefined) throw new UnrecoverableError("BullMQ job without an id");
    const attempt = job.attemptsMade + 1;
    const logger = this.#options.logger.child({ jobId: id, attempt });
    if (this.#stopping) {
      // Fetched while the worker was closing: leave it for the next worker untouched.
      await job.moveToWait(token);
      throw new WaitingError();
    }

    const started = await this.#options.store.transition(id, {
      from: ["queued", "running"],
      to: "running",
      fields: { startedAt: now(), attempts: attempt, progress: progressOf("starting", 0, 0) },
      event: { type: "status", data: { status: "running", at: now(), attempt } },
    });
    if (started.outcome === "missing") {
      logger.info("Job record no longer exists (deleted or expired); skipping it");
      return;
    }
    if (started.outcome === "conflict") {
      logger.info({ status: started.statusBefore }, "Job is already finished; skipping it");
      return;
    }
    if (started.cancelRequested) {
      await this.#markCancelled(id, logger);
      return;
    }

    const run: RunningJob = { controller: new AbortController(), reason: undefined };
    this.#running.set(id, run);
    signal?.addEventListener("abort", () => {
      run.reason ??= "shutdown";
      run.controller.abort();
    });
    try {
      await this.#run(id, run, logger);
    } catch (error) {
      await this.#handleFailure(job, token, run, error, logger);
    } finally {
      this.#running.delete(id);
    }
  }

  async #run(id: string, run: RunningJob, logger: Logger): Promise<void> {
    const { store, storage } = this.#options;
    const record = await store.get(id);
    if (record === undefined) {
      run.reason = "deleted";
      run.controller.abort();
      throw new Error(`job record ${id} disappeared before the run started`);
    }
    logger.info({ method: record.options.method, density: record.options.density }, "Job started");

    const outDir = await mkdtemp(join(this.#options.workDir ?? tmpdir(), `pifa-job-${id}-`));
    let checkpoint: Checkpoint | undefined;
    try {
      checkpoint = await openStoredCheckpoint(storage, record.inputs);
      const config = await readStoredConfig(storage, record.inputs.config);
      const tokens = await readStoredTokenData(storage, record.inputs, record.options, config);
      const result = await compressCheckpoint({
        checkpoint,
        config,
        calibration: tokens.calibration,
        evaluation: tokens.evaluation,
        options: record.options,
        outDir,
        signal: run.controller.signal,
        logger,
        layerStore: storageLayerStore(storage, id, logger),
        onProgress: (progress) => {
          const view = progressOf(progress.stage, progress.layersDone, progress.layersTotal);
          return this.#recordProgress(id, run, view, progress.layer, logger);
        },
      });
      // A shutdown that arrives after the last layer lets the finished work be published.
      if (run.reason === "cancel" || run.reason === "deleted") {
        throw new CompressionError("CANCELLED", "compression stopped after its last layer");
      }

      const layers = result.report.totals.layers;
      await this.#recordProgress(
        id,
        run,
        progressOf("publishing", layers, layers),
        undefined,
        logger,
      );
      const artifacts = await publishArtifacts(storage, id, outDir, result.files);
      // Saved layers only serve a resumed run, and a succeeded job never runs again. They go
      // before the status changes, so clients that see "succeeded" see the final storage state.
      await storage.deletePrefix(savedLayersPrefix(id));
      const done = await store.transition(id, {
        from: ["running"],
        to: "succeeded",
        fields: {
          finishedAt: now(),
          artifacts,
          report: result.report,
          progress: progressOf("done", layers, layers),
        },
        event: { type: "status", data: { status: "succeeded", at: now(), artifacts } },
      });
      if (done.outcome !== "ok") {
        // Deleted (or finished by someone else) while publishing: the artifacts belong to no job.
        await storage.deletePrefix(jobStoragePrefix(id));
        logger.info("Job was deleted while its artifacts were published; removed them");
        return;
      }
      logger.info(
        { artifacts: artifacts.length, density: result.report.totals.density },
        "Job succeeded",
      );
    } finally {
      await checkpoint?.close();
      await rm(outDir, { recursive: true, force: true });
    }
  }

  /** Records progress and stops the run when the job was cancelled or deleted meanwhile. */
  async #recordProgress(
    id: string,
    run: RunningJob,
    view: JobProgress,
    layer: string | undefined,
    logger: Logger,
  ): Promise<void> {
    const result = await this.#options.store.transition(id, {
      from: ["running"],
      fields: { progress: view },
      event: { type: "progress", data: layer === undefined ? { ...view } : { ...view, layer } },
    });
    logger.debug({ ...view, layer }, "Job progress");
    if (result.outcome === "missing") {
      run.reason ??= "deleted";
      run.controller.abort();
    } else if (result.outcome === "conflict" || result.cancelRequested) {
      run.reason ??= "cancel";
      run.controller.abort();
    }
  }

  async #markCancelled(id: string, logger: Logger): Promise<void> {
    await this.#options.store.transition(id, {
      from: ["queued", "running"],
      to: "cancelled",
      fields: { finishedAt: now() },
      event: { type: "status", data: { status: "cancelled", at: now() } },
    });
    logger.info("Job cancelled");
  }

  async #handleFailure(
    job: Job,
    token: string | undefined,
    run: RunningJob,
    error: unknown,
    logger: Logger,
  ): Promise<void> {
    const id = job.id as string;
    const { store, storage } = this.#options;

    if (run.controller.signal.aborted && run.reason !== undefined) {
      if (run.reason === "cancel") {
        await this.#markCancelled(id, logger);
        return;
      }
      if (run.reason === "deleted") {
        await storage.deletePrefix(jobStoragePrefix(id));
        logger.info("Job was deleted while running; stopped it and removed its objects");
        return;
      }
      // Shutdown: hand the job back, so the next worker resumes it after the saved layers.
      await store.transition(id, {
        from: ["running"],
        to: "queued",
        fields: { progress: progressOf("queued", 0, 0) },
        event: {
          type: "status",
          data: { status: "queued", at: now(), reason: "worker shut down" },
        },
      });
      await job.moveToWait(token);
      logger.info("Worker is shutting down; handed the job back to the queue");
      throw new WaitingError();
    }

    if (isInputError(error)) {
      await store.transition(id, {
        from: ["running"],
        to: "failed",
        fields: { finishedAt: now(), error: { code: error.code, message: error.message } },
        event: {
          type: "status",
          data: {
            status: "failed",
            at: now(),
            error: { code: error.code, message: error.message },
          },
        },
      });
      logger.info(
        { code: error.code, message: error.message },
        "Job failed on invalid input; not retrying",
      );
      throw new UnrecoverableError(error.message);
    }

    const maxAttempts = job.opts.attempts ?? 1;
    const attempt = job.attemptsMade + 1;
    if (attempt < maxAttempts) {
      await store.transition(id, {
        from: ["running"],
        to: "queued",
        fields: { progress: progressOf("retrying", 0, 0) },
        event: {
          type: "status",
          data: {
            status: "queued",
            at: now(),
            reason: "retrying",
            attempt,
            maxAttempts,
            message: errorMessage(error),
          },
        },
      });
      logger.info(
        { err: error, attempt, maxAttempts },
        "Job failed on an infrastructure error; it will be retried",
      );
    } else {
      const failure: { code: JobErrorCode; message: string } = {
        code: "COMPRESSION_FAILED",
        message: `Compression failed after ${attempt} attempts: ${errorMessage(error)}`,
      };
      await store.transition(id, {
        from: ["running"],
        to: "failed",
        fields: { finishedAt: now(), error: failure },
        event: { type: "status", data: { status: "failed", at: now(), error: failure } },
      });
      logger.error(
        { err: error, attempt },
        "Job failed on an infrastructure error after its last attempt",
      );
    }
    throw error;
  }
}
