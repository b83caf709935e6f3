/**
 * The BullMQ queue that carries compression jobs from the API to the workers. A BullMQ job has
 * the same id as the job record and carries no other data: the worker reads everything from the
 * record, which stays the status of record.
 */

import { setTimeout } from "node:timers/promises";
import { type JobsOptions, type KeepJobs, Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { logConnectionErrors } from "./connection-errors.ts";
import { DATA_AWARE_QUEUE_NAME } from "./flow.ts";
import type { RetentionPolicy } from "./store.ts";

/** Name of the BullMQ queue; its keys are `<prefix>:compress:*`. */
export const QUEUE_NAME = "compress";

/** Maximum wait of `removeFinished` for workers to release a finished job, in milliseconds. */
const RELEASE_WAIT_MS = 3000;

const RELEASE_POLL_MS = 50;

/** Name given to every BullMQ job of the queue. */
export const JOB_NAME = "compress-checkpoint";

export interface RetryPolicy {
  /** Attempts per job, the first one included; only infrastructure errors are retried. */
  attempts: number;
  /** Delay before the first retry in milliseconds, doubled for each further retry. */
  backoffMs: number;
}

/** BullMQ's retention of finished jobs, matching the job store's own retention. */
export function keepJobs(retention: RetentionPolicy): KeepJobs {
  return { age: retention.maxAgeSeconds, count: retention.maxCount };
}

/** Options of every BullMQ job the producer adds. */
export function jobOptions(retry: RetryPolicy, retention: RetentionPolicy): JobsOptions {
  const keep = keepJobs(retention);
  return {
    attempts: retry.attempts,
    backoff: { type: "exponential", delay: retry.backoffMs },
    removeOnComplete: keep,
    removeOnFail: keep,
  };
}

export interface JobQueueOptions {
  /** Key prefix with a `{...}` hash tag, shared with the worker. */
  prefix: string;
  retry: RetryPolicy;
  retention: RetentionPolicy;
  logger: Logger;
}

/** Producer side of the queue: adds jobs and removes queued ones. */
export class JobQueue {
  readonly queue: Queue;
  /** Queue that workers move data-aware jobs to; a job id is in at most one of the two at a time. */
  readonly dataAwareQueue: Queue;
  readonly #jobOptions: JobsOptions;

  constructor(connection: Redis, options: JobQueueOptions) {
    this.queue = new Queue(QUEUE_NAME, { connection, prefix: options.prefix });
    this.dataAwareQueue = new Queue(DATA_AWARE_QUEUE_NAME, { connection, prefix: options.prefix });
    logConnectionErrors(this.queue, options.logger, "queue");
    logConnectionErrors(this.dataAwareQueue, options.logger, "data-aware queue");
    this.#jobOptions = jobOptions(options.retry, options.retention);
  }

  /** Queues the job with id `jobId`. Adding an id that BullMQ already has does nothing. */
  async enqueue(jobId: string): Promise<void> {
    await this.queue.add(JOB_NAME, {}, { ...this.#jobOptions, jobId });
  }

  /**
   * Removes a job that no worker has locked. Returns true when it was removed or was not in the
   * queue, and false while a worker has it locked, so the worker has to stop it.
   */
  async removeUnlocked(jobId: string): Promise<boolean> {
    for (const queue of [this.queue, this.dataAwareQueue]) {
      if ((await queue.remove(jobId)) === 1) continue;
      const state = await queue.getJobState(jobId);
      if (state !== "unknown" && state !== "completed" && state !== "failed") return false;
    }
    return true;
  }

  /**
   * Removes a finished job's BullMQ entry so that `enqueue` can add the id again. Returns false
   * while a worker still has the job locked, for example one that is returning after a cancel.
   */
  async removeFinished(jobId: string): Promise<boolean> {
    // A fanned-out job's parent and last layer group finish a moment after the record does.
    const deadline = Date.now() + RELEASE_WAIT_MS;
    for (;;) {
      if (await this.#removeFromAll(jobId)) return true;
      if (Date.now() >= deadline) return false;
      await setTimeout(RELEASE_POLL_MS);
    }
  }

  async #removeFromAll(jobId: string): Promise<boolean> {
    for (const queue of [this.queue, this.dataAwareQueue]) {
      if ((await queue.remove(jobId)) === 1) continue;
      if ((await queue.getJobState(jobId)) !== "unknown") return false;
    }
    return true;
  }

  async close(): Promise<void> {
    await Promise.all([this.queue.close(), this.dataAwareQueue.close()]);
  }
}
