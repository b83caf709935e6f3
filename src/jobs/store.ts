/**
 * The job store: job records as Redis hashes, indexes for listing, and the per-job event stream.
 * Every status change goes through one Lua script, so the record, its indexes and its event log
 * always agree.
 */

import type { Redis } from "ioredis";
import type { JobKeys } from "./keys.ts";
import {
  isFinalStatus,
  JOB_STATUSES,
  type JobRecord,
  type JobStatus,
  QUEUED_PROGRESS,
  storedBytesOf,
} from "./model.ts";
import { decodeRecord, encodeRecordFields } from "./record-codec.ts";
import { CREATE_JOB, REQUEUE_JOB, TRANSITION_JOB } from "./scripts.ts";

/** How long finished jobs are kept, mirrored in BullMQ's `removeOnComplete`/`removeOnFail`. */
export interface RetentionPolicy {
  /** Seconds a finished job (record, events, stored objects) is kept. */
  maxAgeSeconds: number;
  /** Finished jobs kept at most; older ones are deleted first. */
  maxCount: number;
}

/**
 * Extra time a finished record stays in Redis after the retention sweep should have deleted it.
 * The sweep deletes the job's stored objects with it, so the TTL is only a backstop for a sweep
 * that did not run.
 */
const RECORD_TTL_GRACE_SECONDS = 3600;

export type EventType = "status" | "progress";

/** Event appended with a transition; `data` is serialized to JSON. */
export interface JobEventInput {
  type: EventType;
  data: Record<string, unknown>;
}

export interface TransitionRequest {
  /** Statuses the job may be in; any other status is a conflict and nothing changes. */
  from: readonly JobStatus[];
  /** New status, or undefined to keep the current one. */
  to?: JobStatus;
  fields?: Partial<JobRecord>;
  event?: JobEventInput;
}

export type TransitionResult =
  | { outcome: "ok"; statusBefore: JobStatus; cancelRequested: boolean }
  | { outcome: "conflict"; statusBefore: JobStatus; cancelRequested: boolean }
  | { outcome: "missing" };

export type CreateResult =
  | { created: true; eventId: string }
  | { created: false; existingId: string; existingFingerprint: string };

export interface IdempotencyClaim {
  key: string;
  fingerprint: string;
}

export interface ListRequest {
  status?: JobStatus;
  /** Only this tenant's jobs; undefined lists every tenant's. */
  tenant?: string;
  /** Id of the last job of the previous page; the page starts with the next older job. */
  afterId?: string;
  limit: number;
}

export class JobStore {
  readonly redis: Redis;
  readonly keys: JobKeys;
  readonly retention: RetentionPolicy;

  constructor(redis: Redis, keys: JobKeys, retention: RetentionPolicy) {
    this.redis = redis;
    this.keys = keys;
    this.retention = retention;
  }

  /**
   * Stores a new queued job with its first status event. With an idempotency claim, an existing
   * job that claimed the same key is returned instead and nothing is stored.
   */
  async create(record: JobRecord, claim?: IdempotencyClaim): Promise<CreateResult> {
    const { keys } = this;
    const fields = encodeRecordFields({ ...record, status: "queued", progress: QUEUED_PROGRESS });
    const eventData = JSON.stringify({ status: "queued", at: record.createdAt });
    const result = (await CREATE_JOB.run(
      this.redis,
      [
        keys.job(record.id),
        keys.all(),
        keys.byStatus("queued"),
        keys.events(record.id),
        claim ? keys.idempotency(claim.key) : keys.idempotency(""),
      ],
      [
        record.id,
        claim?.fingerprint ?? "",
        this.retention.maxAgeSeconds,
        `${keys.prefix}:job:`,
        eventData,
        keys.eventChannel(),
        ...fields,
      ],
    )) as [string, string, string];
    if (result[0] === "created") {
      // NOTE: these run after the create script. A crash in between leaves the job out of its
      // tenant's list and stored total, although the record still carries the tenant.
      await this.redis
        .multi()
        .zadd(keys.tenantJobs(record.tenant), 0, record.id)
        .incrby(keys.tenantStoredBytes(record.tenant), storedBytesOf(record))
        .exec();
      return { created: true, eventId: result[2] };
    }
    return { created: false, existingId: result[1], existingFingerprint: result[2] };
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const hash = await this.redis.hgetall(this.keys.job(id));
    return decodeRecord(hash);
  }

  /**
   * Returns one page of jobs, newest first. Index entries whose record has expired are removed on
   * the way, so a page can hold fewer than `limit` jobs only at the end of the list.
   */
  async list(request: ListRequest): Promise<{ jobs: JobRecord[]; hasMore: boolean }> {
    const index =
      request.tenant !== undefined
        ? this.keys.tenantJobs(request.tenant)
        : request.status
          ? this.keys.byStatus(request.status)
          : this.keys.all();
    // The tenant index contains every status, so a status filter on it applies to the records.
    const statusFilter = request.tenant !== undefined ? request.status : undefined;
    const jobs: JobRecord[] = [];
    let upper = request.afterId === undefined ? "+" : `(${request.afterId}`;
    while (jobs.length < request.limit) {
      const wanted = request.limit - jobs.length;
      const ids = await this.redis.zrevrangebylex(index, upper, "-", "LIMIT", 0, wanted + 1);
      const page = ids.slice(0, wanted);
      const records = await this.#getMany(page);
      const expired = page.filter((_, i) => records[i] === undefined);
      if (expired.length > 0) await this.#dropFromIndexes(expired, request.tenant);
      for (const record of records) {
        if (record && (statusFilter === undefined || record.status === statusFilter))
          jobs.push(record);
      }
      if (ids.length <= wanted) return { jobs, hasMore: false };
      upper = `(${page[page.length - 1]}`;
    }
    return { jobs, hasMore: true };
  }

  /** Applies a status change, field update and event atomically; see `TRANSITION_JOB`. */
  async transition(id: string, request: TransitionRequest): Promise<TransitionResult> {
    const { keys } = this;
    const final = request.to !== undefined && isFinalStatus(request.to);
    const ttl = final ? this.retention.maxAgeSeconds + RECORD_TTL_GRACE_SECONDS : 0;
    const result = (await TRANSITION_JOB.run(
      this.redis,
      [keys.job(id), keys.events(id), keys.finished()],
      [
        id,
        request.from.join(" "),
        request.to ?? "",
        `${keys.prefix}:jobs:status:`,
        request.event?.type ?? "",
        request.event ? JSON.stringify(request.event.data) : "",
        keys.eventChannel(),
        Date.now(),
        ttl,
        ...encodeRecordFields(request.fields ?? {}),
      ],
    )) as [string, string, string];
    const [outcome, statusBefore, cancelRequested] = result;
    if (outcome === "missing") return { outcome };
    if (outcome === "ok" && request.fields?.artifacts !== undefined) {
      await this.#countArtifactBytes(id, request.fields.artifacts);
    }
    return {
      outcome: outcome === "ok" ? "ok" : "conflict",
      statusBefore: statusBefore as JobStatus,
      cancelRequested: cancelRequested === "1",
    };
  }

  /**
   * Moves a failed or cancelled job back to `queued` with a `queued` event (reason "retry"),
   * clearing its error, finish time and cancel flag. Returns the status it had before.
   */
  async requeue(id: string): Promise<TransitionResult> {
    const { keys } = this;
    const now = new Date().toISOString();
    const result = (await REQUEUE_JOB.run(
      this.redis,
      [keys.job(id), keys.events(id), keys.finished()],
      [
        id,
        `${keys.prefix}:jobs:status:`,
        JSON.stringify({ status: "queued", at: now, reason: "retry" }),
        keys.eventChannel(),
        ...encodeRecordFields({ cancelRequested: false, progress: QUEUED_PROGRESS }),
      ],
    )) as [string, string];
    const [outcome, statusBefore] = result;
    if (outcome === "missing") return { outcome };
    return {
      outcome: outcome === "ok" ? "ok" : "conflict",
      statusBefore: statusBefore as JobStatus,
      cancelRequested: false,
    };
  }

  /** Sets the cancel flag of a queued or running job; the worker checks it after every layer. */
  async requestCancel(id: string): Promise<TransitionResult> {
    return this.transition(id, { from: ["queued", "running"], fields: { cancelRequested: true } });
  }

  /**
   * Deletes the record, its events and its index entries, and takes its bytes off its tenant's
   * stored total. Stored objects are the caller's part.
   */
  async delete(id: string): Promise<void> {
    const { keys } = this;
    const record = await this.get(id);
    const multi = this.redis
      .multi()
      .del(keys.job(id))
      .del(keys.events(id))
      .zrem(keys.all(), id)
      .zrem(keys.finished(), id);
    for (const status of JOB_STATUSES) multi.zrem(keys.byStatus(status), id);
    if (record !== undefined) multi.zrem(keys.tenantJobs(record.tenant), id);
    const replies = (await multi.exec()) ?? [];
    // Only the call that removed the record subtracts its bytes, so two deletes count once.
    if (record !== undefined && replies[0]?.[1] === 1) {
      await this.redis.decrby(keys.tenantStoredBytes(record.tenant), storedBytesOf(record));
    }
  }

  /** Bytes the tenant's jobs hold in storage, as counted on create, publish and delete. */
  async storedBytes(tenant: string): Promise<number> {
    return Number((await this.redis.get(this.keys.tenantStoredBytes(tenant))) ?? "0");
  }

  /** Adds the bytes of a job's newly published artifacts to its tenant's stored total. */
  async #countArtifactBytes(id: string, artifacts: readonly { size: number }[]): Promise<void> {
    const tenant = (await this.redis.hget(this.keys.job(id), "tenant")) ?? "default";
    const bytes = artifacts.reduce((sum, artifact) => sum + artifact.size, 0);
    await this.redis.incrby(this.keys.tenantStoredBytes(tenant), bytes);
  }

  /** Number of indexed jobs in each status. Expired records count until a list or sweep drops them. */
  async countByStatus(): Promise<Record<JobStatus, number>> {
    const multi = this.redis.multi();
    for (const status of JOB_STATUSES) multi.zcard(this.keys.byStatus(status));
    const replies = (await multi.exec()) ?? [];
    const counts = {} as Record<JobStatus, number>;
    JOB_STATUSES.forEach((status, i) => {
      counts[status] = Number(replies[i]?.[1] ?? 0);
    });
    return counts;
  }

  /** Finished job ids past the retention policy: older than the max age, or beyond the max count. */
  async expiredJobIds(now: number = Date.now()): Promise<string[]> {
    const cutoff = now - this.retention.maxAgeSeconds * 1000;
    const old = await this.redis.zrangebyscore(this.keys.finished(), "-inf", `(${cutoff}`);
    const total = await this.redis.zcard(this.keys.finished());
    const excess = total - this.retention.maxCount;
    const oldest = excess > 0 ? await this.redis.zrange(this.keys.finished(), 0, excess - 1) : [];
    return [...new Set([...old, ...oldest])];
  }

  async #getMany(ids: string[]): Promise<Array<JobRecord | undefined>> {
    if (ids.length === 0) return [];
    const multi = this.redis.multi();
    for (const id of ids) multi.hgetall(this.keys.job(id));
    const replies = (await multi.exec()) ?? [];
    return replies.map(([error, hash]) => {
      if (error) throw error;
      return decodeRecord(hash as Record<string, string>);
    });
  }

  async #dropFromIndexes(ids: string[], tenant?: string): Promise<void> {
    const multi = this.redis
      .multi()
      .zrem(this.keys.all(), ...ids)
      .zrem(this.keys.finished(), ...ids);
    if (tenant !== undefined) multi.zrem(this.keys.tenantJobs(tenant), ...ids);
    for (const status of JOB_STATUSES) multi.zrem(this.keys.byStatus(status), ...ids);
    await multi.exec();
  }
}
