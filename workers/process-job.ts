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
import {
  type Job,
  type Queue,
  UnrecoverableError,
  WaitingChildrenError,
  WaitingError,
} from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Checkpoint } from "../src/checkpoint/checkpoint.ts";
import { CompressionError } from "../src/compression/errors.ts";
import { isDataAware } from "../src/compression/options.ts";
import type { JobErrorCode } from "../src/jobs/errors.ts";
import {
  DATA_AWARE_JOB_NAME,
  finishedLayersKey,
  LAYER_GROUP_JOB_NAME,
  layerGroupJobId,
  layerGroups,
  type ParentJobData,
} from "../src/jobs/flow.ts";
import { isInputError } from "../src/jobs/input-errors.ts";
import { openStoredCheckpoint, readStoredConfig, readStoredTokenData } from "../src/jobs/inputs.ts";
import {
  isFinalStatus,
  type JobProgress,
  type JobRecord,
  jobStoragePrefix,
  progressOf,
} from "../src/jobs/model.ts";
import { QUEUE_NAME } from "../src/jobs/queue.ts";
import type { JobStore, TransitionResult } from "../src/jobs/store.ts";
import type { Storage } from "../src/storage/types.ts";
import type { WorkerMetrics } from "./metrics.ts";
import { compressCheckpoint } from "./pipeline/compress.ts";
import type { LayerReport } from "./pipeline/layer.ts";
import { planCompression } from "./pipeline/plan.ts";
import { publishArtifacts } from "./publish.ts";
import { savedLayersPrefix, storageLayerStore } from "./storage-layer-store.ts";

export interface JobRunnerOptions {
  store: JobStore;
  storage: Storage;
  logger: Logger;
  /** Directory for the per-job temporary artifact directories; defaults to the OS temp directory. */
  workDir?: string;
  /** Fan-out of data-free jobs and routing of data-aware ones; absent runs every job whole here. */
  flow?: FlowContext;
  metrics?: WorkerMetrics;
}

/** Queues and settings for fanning out data-free jobs and routing data-aware ones. */
export interface FlowContext {
  connection: Redis;
  /** BullMQ key prefix, also used for the finished-layers sets. */
  prefix: string;
  /** Compressed weight matrices per child job; 0 keeps every data-free job on one worker. */
  layersPerChild: number;
  /** Main queue, which contains the parent jobs. */
  mainQueue: Queue;
  layerGroupQueue: Queue;
  dataAwareQueue: Queue;
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

    if (await this.#routeDataAware(job, logger)) return;

    const started = await this.#markRunning(job, attempt);
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
      await this.#run(job, token, run, logger);
    } catch (error) {
      if (error instanceof WaitingChildrenError) throw error;
      await this.#handleFailure(job, token, run, error, logger);
    } finally {
      this.#running.delete(id);
    }
  }

  /**
   * Marks the job running. The assembly run of a fanned-out job finds it running already (its
   * children ran it), and then adds no second "running" status event.
   */
  async #markRunning(job: Job, attempt: number): Promise<TransitionResult> {
    const { store } = this.#options;
    const id = job.id as string;
    if ((job.data as ParentJobData).step === "assemble") {
      const assembling = await store.transition(id, { from: ["running"] });
      if (assembling.outcome !== "conflict" || isFinalStatus(assembling.statusBefore)) {
        return assembling;
      }
    }
    return store.transition(id, {
      from: ["queued", "running"],
      to: "running",
      fields: { startedAt: now(), attempts: attempt, progress: progressOf("starting", 0, 0) },
      event: { type: "status", data: { status: "running", at: now(), attempt } },
    });
  }

  /**
   * Moves a data-aware job from the main queue to the data-aware queue, whose global concurrency
   * caps how many run at once. Returns true when the job was moved and this run is over.
   */
  async #routeDataAware(job: Job, logger: Logger): Promise<boolean> {
    const flow = this.#options.flow;
    if (flow === undefined || job.queueName !== QUEUE_NAME) return false;
    const record = await this.#options.store.get(job.id as string);
    if (record === undefined || isFinalStatus(record.status)) return false;
    if (!isDataAware(record.options.method)) return false;
    await flow.dataAwareQueue.add(
      DATA_AWARE_JOB_NAME,
      {},
      {
        jobId: record.id,
        attempts: job.opts.attempts,
        backoff: job.opts.backoff,
        removeOnComplete: job.opts.removeOnComplete,
        removeOnFail: job.opts.removeOnFail,
      },
    );
    logger.info({ method: record.options.method }, "Moved the data-aware job to its own queue");
    return true;
  }

  /**
   * Splits a data-free job into layer-group child jobs on its first run and parks it until they
   * finish; BullMQ then runs it again to assemble the artifact from the saved layers. Returns
   * when there is nothing to fan out (one group, fan-out off, or the assembly run), and throws
   * WaitingChildrenError while children are pending.
   */
  async #fanOut(job: Job, token: string | undefined, record: JobRecord, logger: Logger) {
    const flow = this.#options.flow;
    const data = job.data as ParentJobData;
    if (flow === undefined || flow.layersPerChild === 0 || data.step === "assemble") return;
    if (isDataAware(record.options.method) || token === undefined) return;

    const checkpoint = await openStoredCheckpoint(this.#options.storage, record.inputs);
    let layerCount: number;
    try {
      layerCount = planCompression(checkpoint, record.options).layers.length;
    } finally {
      await checkpoint.close();
    }
    const groups = layerGroups(record.id, layerCount, flow.layersPerChild);
    if (groups.length <= 1) return;

    // NOTE: a parent that stopped between adding its children and recording the "assemble" step
    // fans out again. That path has no test, and groups that finished before it are then not
    // counted in progress until the assembly run.
    await flow.connection.del(finishedLayersKey(flow.prefix, record.id));
    await flow.layerGroupQueue.addBulk(
      groups.map((group) => ({
        name: LAYER_GROUP_JOB_NAME,
        data: group,
        opts: {
          jobId: layerGroupJobId(record.id, group.group),
          parent: { id: record.id, queue: job.queueQualifiedName },
          failParentOnFailure: true,
          attempts: job.opts.attempts,
          backoff: job.opts.backoff,
          removeOnComplete: job.opts.removeOnComplete,
          removeOnFail: job.opts.removeOnFail,
        },
      })),
    );
    await job.updateData({ step: "assemble" } satisfies ParentJobData);
    logger.info(
      { layers: layerCount, children: groups.length, layersPerChild: flow.layersPerChild },
      "Job fanned out into layer groups",
    );
    // False when every child already finished: the artifact is then assembled in this run.
    if (await job.moveToWaitingChildren(token)) throw new WaitingChildrenError();
  }

  async #run(job: Job, token: string | undefined, run: RunningJob, logger: Logger): Promise<void> {
    const { store, storage } = this.#options;
    const id = job.id as string;
    const record = await store.get(id);
    if (record === undefined) {
      run.reason = "deleted";
      run.controller.abort();
      throw new Error(`job record ${id} disappeared before the run started`);
    }
    await this.#fanOut(job, token, record, logger);
    const assembling = (job.data as ParentJobData).step === "assemble";
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
        layersPrecomputed: assembling,
        onProgress: (progress) => {
          // After a fan-out the layers are only loaded, so this is assembly, not compression.
          const stage =
            assembling && progress.stage === "compressing" ? "assembling" : progress.stage;
          const view = progressOf(stage, progress.layersDone, progress.layersTotal);
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
      const flow = this.#options.flow;
      if (flow !== undefined) await flow.connection.del(finishedLayersKey(flow.prefix, id));
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
      this.#observeSuccess(record, result.report.layers, assembling);
    } finally {
      await checkpoint?.close();
      await rm(outDir, { recursive: true, force: true });
    }
  }

  #observeSuccess(record: JobRecord, layers: readonly LayerReport[], assembling: boolean): void {
    const metrics = this.#options.metrics;
    if (metrics === undefined) return;
    const method = record.options.method;
    // After a fan-out the layer groups observed their layers on the workers that computed them.
    // NOTE: a resumed single-worker run observes the layers it loaded again with their old times.
    if (!assembling) for (const layer of layers) metrics.observeLayer(method, layer.seconds);
    const started = Date.parse(record.startedAt ?? record.createdAt);
    metrics.observeJob(method, (Date.now() - started) / 1000);
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
