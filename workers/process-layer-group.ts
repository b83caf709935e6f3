/**
 * Runs one layer-group child job of a fanned-out data-free job: compresses the group's layers into
 * the job's layer store and records progress as the count of the job's finished layers across all
 * children. A failure on the last attempt fails the job record with the child's error, and BullMQ
 * (`failParentOnFailure`) fails the parent job with it.
 */

import { Job, UnrecoverableError, WaitingError } from "bullmq";
import type { Logger } from "pino";
import type { Checkpoint } from "../src/checkpoint/checkpoint.ts";
import type { JobErrorCode } from "../src/jobs/errors.ts";
import { finishedLayersKey, type LayerGroupData } from "../src/jobs/flow.ts";
import { isInputError } from "../src/jobs/input-errors.ts";
import { openStoredCheckpoint } from "../src/jobs/inputs.ts";
import { isFinalStatus, jobStoragePrefix, progressOf } from "../src/jobs/model.ts";
import type { JobStore } from "../src/jobs/store.ts";
import type { Storage } from "../src/storage/types.ts";
import { compressLayerGroup } from "./layer-group.ts";
import { planCompression } from "./pipeline/plan.ts";
import type { FlowContext } from "./process-job.ts";
import { storageLayerStore } from "./storage-layer-store.ts";

export interface LayerGroupRunnerOptions {
  store: JobStore;
  storage: Storage;
  logger: Logger;
  flow: FlowContext;
  /** Id of this worker process in logs, so a job's log lines show which workers took part. */
  workerId: string;
  /** Called after each layer this worker computed, with its compute time in seconds. */
  onLayerComputed?: (method: string, seconds: number) => void;
}

type StopReason = "cancel" | "deleted" | "shutdown";

interface RunningGroup {
  controller: AbortController;
  reason: StopReason | undefined;
}

function now(): string {
  return new Date().toISOString();
}

export class LayerGroupRunner {
  readonly #options: LayerGroupRunnerOptions;
  readonly #running = new Set<RunningGroup>();
  #stopping = false;

  constructor(options: LayerGroupRunnerOptions) {
    this.#options = options;
  }

  /** Asks every running group to stop at its next layer boundary and go back to the queue. */
  handBackAll(): void {
    this.#stopping = true;
    for (const run of this.#running) {
      run.reason ??= "shutdown";
      run.controller.abort();
    }
  }

  /** BullMQ processor of the layer-group queue. */
  async process(
    job: Job<LayerGroupData>,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const { jobId, group, first, end } = job.data;
    const logger = this.#options.logger.child({
      jobId,
      group,
      childJobId: job.id,
      attempt: job.attemptsMade + 1,
      workerId: this.#options.workerId,
    });
    if (this.#stopping) {
      await job.moveToWait(token);
      throw new WaitingError();
    }
    const { store, storage, flow } = this.#options;
    const record = await store.get(jobId);
    if (record === undefined || isFinalStatus(record.status)) {
      logger.info(
        { status: record?.status },
        "Job is deleted or finished; skipping its layer group",
      );
      return;
    }
    if (record.cancelRequested) {
      await this.#markCancelled(jobId, logger);
      return;
    }

    const run: RunningGroup = { controller: new AbortController(), reason: undefined };
    this.#running.add(run);
    signal?.addEventListener("abort", () => {
      run.reason ??= "shutdown";
      run.controller.abort();
    });
    let checkpoint: Checkpoint | undefined;
    try {
      checkpoint = await openStoredCheckpoint(storage, record.inputs);
      const layersTotal = planCompression(checkpoint, record.options).layers.length;
      logger.info({ first, end }, "Layer group started");
      await compressLayerGroup({
        checkpoint,
        options: record.options,
        first,
        end,
        layerStore: storageLayerStore(storage, jobId, logger),
        signal: run.controller.signal,
        logger,
        onLayer: async (name, seconds) => {
          if (seconds > 0) this.#options.onLayerComputed?.(record.options.method, seconds);
          const key = finishedLayersKey(flow.prefix, jobId);
          const [, [, done]] = (await flow.connection
            .multi()
            .sadd(key, name)
            .scard(key)
            .exec()) as [[null, number], [null, number]];
          await this.#recordProgress(jobId, run, done, layersTotal, name);
        },
      });
      logger.info({ first, end }, "Layer group finished");
      if (this.#stopping) await this.#markQueuedOnShutdown(jobId, logger);
    } catch (error) {
      await this.#handleFailure(job, token, run, error, logger);
    } finally {
      this.#running.delete(run);
      await checkpoint?.close();
    }
  }

  /** Records progress, and stops the run when the job was cancelled or deleted meanwhile. */
  async #recordProgress(
    jobId: string,
    run: RunningGroup,
    done: number,
    total: number,
    layer: string,
  ): Promise<void> {
    const view = progressOf("compressing", done, total);
    const update = () =>
      this.#options.store.transition(jobId, {
        from: ["running"],
        fields: { progress: view },
        event: { type: "progress", data: { ...view, layer } },
      });
    let result = await update();
    if (result.outcome === "conflict" && result.statusBefore === "queued") {
      // A worker that shut down set the job back to queued while this group ran.
      await this.#markRunning(jobId);
      result = await update();
    }
    if (result.outcome === "missing") {
      run.reason ??= "deleted";
      run.controller.abort();
    } else if (result.outcome === "conflict" || result.cancelRequested) {
      run.reason ??= "cancel";
      run.controller.abort();
    }
  }

  /** Marks a queued job running, with a status event, when one of its groups starts. */
  async #markRunning(jobId: string): Promise<void> {
    await this.#options.store.transition(jobId, {
      from: ["queued"],
      to: "running",
      event: { type: "status", data: { status: "running", at: now() } },
    });
  }

  /**
   * Removes the parent's children that no worker took yet, once the job is cancelled or deleted,
   * so the flow ends without every remaining group being fetched only to be skipped. That lets a
   * retry of a cancelled job remove the parent soon after the cancel.
   */
  async #removeUnprocessedSiblings(job: Job<LayerGroupData>, logger: Logger): Promise<void> {
    const parentId = job.parent?.id;
    if (parentId === undefined) return;
    try {
      const parent = await Job.fromId(this.#options.flow.mainQueue, parentId);
      await parent?.removeUnprocessedChildren();
    } catch (error) {
      // The remaining groups are then skipped one by one, which is slower but still correct.
      logger.warn({ err: error, parentId }, "Failed to remove the unprocessed layer groups");
    }
  }

  /**
   * Sets a running job back to queued because this worker stops, so a job whose remaining groups
   * wait in the queue is not shown as running while no worker runs it. The next group that any
   * worker starts sets it to running again.
   */
  async #markQueuedOnShutdown(jobId: string, logger: Logger): Promise<void> {
    await this.#options.store.transition(jobId, {
      from: ["running"],
      to: "queued",
      event: { type: "status", data: { status: "queued", at: now(), reason: "worker shut down" } },
    });
    logger.info(
      "Worker is shutting down; marked the job queued until a worker takes its next group",
    );
  }

  async #markCancelled(jobId: string, logger: Logger): Promise<void> {
    await this.#options.store.transition(jobId, {
      from: ["queued", "running"],
      to: "cancelled",
      fields: { finishedAt: now() },
      event: { type: "status", data: { status: "cancelled", at: now() } },
    });
    logger.info("Job cancelled at a layer boundary of its layer group");
  }

  async #fail(jobId: string, code: string, message: string): Promise<void> {
    await this.#options.store.transition(jobId, {
      from: ["queued", "running"],
      to: "failed",
      fields: { finishedAt: now(), error: { code, message } },
      event: { type: "status", data: { status: "failed", at: now(), error: { code, message } } },
    });
  }

  async #handleFailure(
    job: Job<LayerGroupData>,
    token: string | undefined,
    run: RunningGroup,
    error: unknown,
    logger: Logger,
  ): Promise<void> {
    const { jobId } = job.data;
    if (run.controller.signal.aborted && run.reason === "cancel") {
      await this.#removeUnprocessedSiblings(job, logger);
      await this.#markCancelled(jobId, logger);
      return;
    }
    if (run.controller.signal.aborted && run.reason === "deleted") {
      await this.#removeUnprocessedSiblings(job, logger);
      await this.#options.storage.deletePrefix(jobStoragePrefix(jobId));
      logger.info("Job was deleted while its layer group ran; removed its objects");
      return;
    }
    if (run.controller.signal.aborted && run.reason === "shutdown") {
      // The saved layers stay, so whichever worker takes the group next resumes after them.
      await this.#markQueuedOnShutdown(jobId, logger);
      await job.moveToWait(token);
      logger.info("Handed the layer group back to the queue");
      throw new WaitingError();
    }

    if (isInputError(error)) {
      await this.#fail(jobId, error.code, error.message);
      logger.info(
        { code: error.code, message: error.message },
        "Layer group failed on invalid input",
      );
      throw new UnrecoverableError(error.message);
    }
    const attempt = job.attemptsMade + 1;
    const maxAttempts = job.opts.attempts ?? 1;
    const message = error instanceof Error ? error.message : String(error);
    if (attempt < maxAttempts) {
      logger.info({ err: error, attempt, maxAttempts }, "Layer group failed; it will be retried");
    } else {
      const code: JobErrorCode = "COMPRESSION_FAILED";
      await this.#fail(jobId, code, `Compression failed after ${attempt} attempts: ${message}`);
      logger.error({ err: error, attempt }, "Layer group failed after its last attempt");
    }
    throw error;
  }
}
