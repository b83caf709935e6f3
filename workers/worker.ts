/**
 * The BullMQ worker that runs compression jobs, plus the retention sweep that deletes finished
 * jobs past their retention.
 */

import { hostname } from "node:os";
import { type Job, Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { JOB_ERRORS, type JobErrorCode } from "../src/jobs/errors.ts";
import {
  DATA_AWARE_QUEUE_NAME,
  DEFAULT_LAYERS_PER_CHILD,
  DEFAULT_MAX_DATA_AWARE_JOBS,
  LAYER_GROUP_QUEUE_NAME,
  type LayerGroupData,
} from "../src/jobs/flow.ts";
import { keepJobs, QUEUE_NAME, type RetryPolicy } from "../src/jobs/queue.ts";
import { sweepExpiredJobs } from "../src/jobs/removal.ts";
import type { JobStore, RetentionPolicy } from "../src/jobs/store.ts";
import type { Storage } from "../src/storage/types.ts";
import type { WorkerMetrics } from "./metrics.ts";
import { type FlowContext, JobRunner } from "./process-job.ts";
import { LayerGroupRunner } from "./process-layer-group.ts";

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
  /** Compressed weight matrices per layer-group child job of a data-free job; 0 turns fan-out off. */
  layersPerChild?: number;
  /** Data-aware jobs running at once across all workers; set on the data-aware queue at start. */
  maxDataAwareJobs?: number;
  /** Metrics of this process, served by `listenForMetrics` when enabled. */
  metrics?: WorkerMetrics;
}

/**
 * Default lock duration. BullMQ renews the lock from the event loop at half this interval, and the
 * native calls leave the loop free. The margin covers long synchronous stretches such as parsing a
 * large safetensors header.
 */
const DEFAULT_LOCK_DURATION_MS = 5 * 60 * 1000;

/**
 * Maximum interval between BullMQ stalled-job checks (BullMQ's own default). A shorter lock
 * duration shortens the interval to match, so a crashed worker's job is picked up again after
 * its lock expires and two more checks.
 */
const MAX_STALLED_INTERVAL_MS = 30 * 1000;

const DEFAULT_SWEEP_INTERVAL_MS = 60 * 1000;

export class CompressionWorker {
  /** Worker of the main queue: data-free jobs (fan-out and assembly) and routing of data-aware ones. */
  readonly worker: Worker;
  /** Worker of the layer-group child jobs. */
  readonly layerGroupWorker: Worker;
  /** Worker of the data-aware queue, whose global concurrency caps data-aware jobs. */
  readonly dataAwareWorker: Worker;
  /** Resolves once the data-aware job limit is set and the data-aware worker runs (or failed to). */
  readonly dataAwareReady: Promise<void>;
  /** `host:pid` of this process, logged with every layer group it runs. */
  readonly workerId = `${hostname()}:${process.pid}`;
  readonly #runner: JobRunner;
  readonly #groupRunner: LayerGroupRunner;
  readonly #queues: Queue[];
  readonly #options: CompressionWorkerOptions;
  readonly #sweepTimer: NodeJS.Timeout;
  #closing: Promise<void> | undefined;

  constructor(options: CompressionWorkerOptions) {
    this.#options = options;
    const logger = options.logger.child({ workerId: this.workerId });
    const queueOptions = { connection: options.connection, prefix: options.prefix };
    const flow: FlowContext = {
      connection: options.connection,
      prefix: options.prefix,
      layersPerChild: options.layersPerChild ?? DEFAULT_LAYERS_PER_CHILD,
      mainQueue: new Queue(QUEUE_NAME, queueOptions),
      layerGroupQueue: new Queue(LAYER_GROUP_QUEUE_NAME, queueOptions),
      dataAwareQueue: new Queue(DATA_AWARE_QUEUE_NAME, queueOptions),
    };
    this.#queues = [flow.mainQueue, flow.layerGroupQueue, flow.dataAwareQueue];
    const maxDataAwareJobs = options.maxDataAwareJobs ?? DEFAULT_MAX_DATA_AWARE_JOBS;
    this.#runner = new JobRunner({
      store: options.store,
      storage: options.storage,
      logger,
      workDir: options.workDir,
      flow,
      metrics: options.metrics,
    });
    this.#groupRunner = new LayerGroupRunner({
      store: options.store,
      storage: options.storage,
      logger,
      flow,
      workerId: this.workerId,
      onLayerComputed: (method, seconds) => options.metrics?.observeLayer(method, seconds),
    });
    const keep = keepJobs(options.retention);
    const workerOptions = {
      ...queueOptions,
      concurrency: options.concurrency ?? 1,
      lockDuration: options.lockDurationMs ?? DEFAULT_LOCK_DURATION_MS,
      stalledInterval: Math.min(
        options.lockDurationMs ?? DEFAULT_LOCK_DURATION_MS,
        MAX_STALLED_INTERVAL_MS,
      ),
      removeOnComplete: keep,
      removeOnFail: keep,
    };
    const timed = <T>(queue: string, work: () => Promise<T>) =>
      options.metrics ? options.metrics.timeBusy(queue, work) : work();
    const processJob = (job: Job, token: string | undefined, signal?: AbortSignal) =>
      timed(job.queueName, () => this.#runner.process(job, token, signal));
    this.worker = new Worker(QUEUE_NAME, processJob, workerOptions);
    // Fetches nothing until the global limit is set, so the limit applies from the first job.
    this.dataAwareWorker = new Worker(DATA_AWARE_QUEUE_NAME, processJob, {
      ...workerOptions,
      autorun: false,
    });
    this.dataAwareReady = flow.dataAwareQueue
      .setGlobalConcurrency(maxDataAwareJobs)
      .then(() => {
        if (this.#closing !== undefined) return;
        this.dataAwareWorker.run().catch((error: unknown) => {
          logger.error({ err: error }, "Data-aware worker stopped on an error");
        });
      })
      .catch((error: unknown) => {
        // Without the limit the data-aware jobs stay queued until a worker restart sets it.
        logger.error(
          { err: error, maxDataAwareJobs },
          "Failed to set the data-aware job limit; this worker takes no data-aware jobs",
        );
      });
    this.layerGroupWorker = new Worker(
      LAYER_GROUP_QUEUE_NAME,
      (job, token, signal) =>
        timed(LAYER_GROUP_QUEUE_NAME, () => this.#groupRunner.process(job, token, signal)),
      workerOptions,
    );
    for (const worker of [this.worker, this.dataAwareWorker]) {
      worker.on("failed", (job, error) => {
        void this.#recordLostJob(job, job?.id, error);
      });
    }
    // A layer group that BullMQ fails on its own (stalled too often) fails the parent job too.
    this.layerGroupWorker.on("failed", (job, error) => {
      void this.#recordLostJob(job, (job?.data as LayerGroupData | undefined)?.jobId, error);
    });
    for (const worker of [this.worker, this.dataAwareWorker, this.layerGroupWorker]) {
      worker.on("error", (error) => {
        logger.error({ err: error, queue: worker.name }, "BullMQ worker error");
      });
    }

    const sweep = () => {
      sweepExpiredJobs(options.store, options.storage, logger).catch((error: unknown) => {
        logger.warn({ err: error }, "Retention sweep failed; it runs again at the next interval");
      });
    };
    this.#sweepTimer = setInterval(sweep, options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref();
    sweep();
    logger.info(
      {
        queues: [QUEUE_NAME, LAYER_GROUP_QUEUE_NAME, DATA_AWARE_QUEUE_NAME],
        prefix: options.prefix,
        concurrency: options.concurrency ?? 1,
        layersPerChild: flow.layersPerChild,
        maxDataAwareJobs,
      },
      "Worker started",
    );
  }

  /**
   * Fails the record of a job that BullMQ failed without the processor recording it, such as a
   * job that stalled more often than allowed after its workers died.
   */
  async #recordLostJob(
    job: Job | undefined,
    recordId: string | undefined,
    error: Error,
  ): Promise<void> {
    if (job === undefined || recordId === undefined) return;
    const lastAttempt =
      job.attemptsMade >= (job.opts.attempts ?? 1) || error.name === "UnrecoverableError";
    if (!lastAttempt) return;
    const code: JobErrorCode = "WORKER_LOST";
    const failure = { code, message: `${JOB_ERRORS[code]} Last error: ${error.message}` };
    try {
      const result = await this.#options.store.transition(recordId, {
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
          { jobId: recordId, err: error },
          "Job failed outside its run; marked it failed",
        );
      }
    } catch (recordError) {
      this.#options.logger.error(
        { jobId: recordId, err: recordError },
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
      await this.dataAwareReady;
      this.#runner.handBackAll();
      this.#groupRunner.handBackAll();
      await Promise.all([
        this.worker.close(),
        this.layerGroupWorker.close(),
        this.dataAwareWorker.close(),
      ]);
      await Promise.all(this.#queues.map((queue) => queue.close()));
      this.#options.logger.info({ workerId: this.workerId }, "Worker stopped");
    })();
    return this.#closing;
  }
}
