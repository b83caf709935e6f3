/**
 * The BullMQ worker that runs compression jobs, plus the retention sweep that deletes finished
 * jobs past their retention.
 */

import { type Job, Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { JOB_ERRORS, type JobErrorCode } from "../src/jobs/errors.ts";
import { keepJobs, QUEUE_NAME, type RetryPolicy } from "../src/jobs/queue.ts";
import { sweepExpiredJobs } from "../src/jobs/removal.ts";
import type { JobStore, RetentionPolicy } from "../src/jobs/store.ts";
import type { Storage } from "../src/storage/types.ts";
import { JobRunner } from "./process-job.ts";

export interface CompressionWorkerOptions {
  /** Connection with `maxRetriesPerRequest: null`, as BullMQ workers require. */
  connection: Redis;
  store: JobStore;
  storage: Storage;
  /** Key prefix with a `{...}` hash tag, shared with the API's queue. */
  prefix: string;
  retry: RetryPolicy;
  retention: RetentionPolicy;
  logger: Logger;
  /** Jobs run at once in this process; the native linear algebra already uses every core. */
  concurrency?: number;
  /** How long a job's lock lasts without renewal, in milliseconds. */
  lockDurationMs?: number;
  /** Milliseconds between retention sweeps. */
  sweepIntervalMs?: number;
  /** Directory for per-job temporary artifact directories. */
  workDir?: string;
}

/**
 * Default lock duration. BullMQ renews the lock from the event loop at half this interval, and the
 * native calls leave the loop free. The margin covers long synchronous stretches such as parsing a
 * large safetensors header.
 */
const DEFAULT_LOCK_DURATION_MS = 5 * 60 * 1000;

const DEFAULT_SWEEP_INTERVAL_MS = 60 * 1000;

export class CompressionWorker {
  readonly worker: Worker;
  readonly #runner: JobRunner;
  readonly #options: CompressionWorkerOptions;
  readonly #sweepTimer: NodeJS.Timeout;
  #closing: Promise<void> | undefined;

  constructor(options: CompressionWorkerOptions) {
    this.#options = options;
    const logger = options.logger;
    this.#runner = new JobRunner({
      store: options.store,
      storage: options.storage,
      logger,
      workDir: options.workDir,
    });
    const keep = keepJobs(options.retention);
    this.worker = new Worker(
      QUEUE_NAME,
      (job, token, signal) => this.#runner.process(job, token, signal),
      {
        connection: options.connection,
        prefix: options.prefix,
        concurrency: options.concurrency ?? 1,
        lockDuration: options.lockDurationMs ?? DEFAULT_LOCK_DURATION_MS,
        removeOnComplete: keep,
        removeOnFail: keep,
      },
    );
    this.worker.on("failed", (job, error) => {
      void this.#recordLostJob(job, error);
    });
    this.worker.on("error", (error) => {
      logger.error({ err: error }, "BullMQ worker error");
    });

    const sweep = () => {
      sweepExpiredJobs(options.store, options.storage, logger).catch((error: unknown) => {
        logger.warn({ err: error }, "Retention sweep failed; it runs again at the next interval");
      });
    };
    this.#sweepTimer = setInterval(sweep, options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref();
    sweep();
    logger.info(
      { queue: QUEUE_NAME, prefix: options.prefix, concurrency: options.concurrency ?? 1 },
      "Worker started",
    );
  }

  /**
   * Fails the record of a job that BullMQ failed without the processor recording it, such as a
   * job that stalled more often than allowed after its workers died.
   */
  async #recordLostJob(job: Job | undefined, error: Error): Promise<void> {
    if (job?.id === undefined) return;
    const lastAttempt =
      job.attemptsMade >= (job.opts.attempts ?? 1) || error.name === "UnrecoverableError";
    if (!lastAttempt) return;
    const code: JobErrorCode = "WORKER_LOST";
    const failure = { code, message: `${JOB_ERRORS[code]} Last error: ${error.message}` };
    try {
      const result = await this.#options.store.transition(job.id, {
        from: ["queued", "running"],
        to: "failed",
        fields: { finishedAt: new Date().toISOString(), error: failure },
        event: {
          type: "status",
          data: { status: "failed", at: new Date().toISOString(), error: failure },
        },
      });
      if (result.outcome === "ok") {
        this.#options.logger.error(
          { jobId: job.id, err: error },
          "Job failed outside its run; marked it failed",
        );
      }
    } catch (recordError) {
      this.#options.logger.error(
        { jobId: job.id, err: recordError },
        "Failed to record a lost job as failed",
      );
    }
  }

  /**
   * Stops taking jobs, aborts running jobs at their next layer boundary so they go back to the
   * queue, and resolves once they have. Connections passed in stay open.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#sweepTimer);
      this.#runner.handBackAll();
      await this.worker.close();
      this.#options.logger.info("Worker stopped");
    })();
    return this.#closing;
  }
}
