import type { JobStatus } from "./model.ts";

/**
 * Redis key names of the job store. Every key starts with the configured prefix, which carries a
 * `{...}` hash tag so that all of them, and BullMQ's queue keys, land in one Redis Cluster slot
 * and the Lua scripts may touch several of them at once.
 */
export class JobKeys {
  readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** Hash with the job record's fields. */
  job(id: string): string {
    return `${this.prefix}:job:${id}`;
  }

  /** Stream of the job's status and progress events, replayed by the SSE route. */
  events(id: string): string {
    return `${this.prefix}:events:${id}`;
  }

  /** Sorted set of every job id, all with score 0, so members sort by id and so by creation time. */
  all(): string {
    return `${this.prefix}:jobs:all`;
  }

  /** Sorted set of the ids in one status, scored like `all`. */
  byStatus(status: JobStatus): string {
    return `${this.prefix}:jobs:status:${status}`;
  }

  /** Sorted set of finished job ids scored by finish time in milliseconds, for retention. */
  finished(): string {
    return `${this.prefix}:jobs:finished`;
  }

  /** String with the job id and request fingerprint claimed by an `Idempotency-Key`. */
  idempotency(key: string): string {
    return `${this.prefix}:idempotency:${key}`;
  }

  /** Sorted set of one tenant's job ids, scored like `all`. */
  tenantJobs(tenant: string): string {
    return `${this.prefix}:tenant:${tenant}:jobs`;
  }

  /** Integer with the bytes a tenant's jobs hold in storage: uploaded inputs and artifacts. */
  tenantStoredBytes(tenant: string): string {
    return `${this.prefix}:tenant:${tenant}:stored-bytes`;
  }

  /** Hash with a tenant's request token bucket (`tokens`, `at` in milliseconds). */
  tenantRateBucket(tenant: string): string {
    return `${this.prefix}:tenant:${tenant}:rate`;
  }

  /** Pub/sub channel that carries the id of every job that got a new event. */
  eventChannel(): string {
    return `${this.prefix}:events`;
  }
}
