/**
 * Per-tenant limits: request rate, queued plus running jobs, and stored bytes. The state lives in
 * Redis, so every API process sharing that Redis enforces the same limits. A limit of 0 turns the
 * check off.
 */

import type { FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import type { JobKeys } from "../jobs/keys.ts";
import { LuaScript } from "../jobs/scripts.ts";
import type { JobStore } from "../jobs/store.ts";
import { principalOf } from "./auth.ts";
import { ApiError } from "./errors.ts";

/** Per-tenant limits; 0 means unlimited. */
export interface TenantLimits {
  /** Requests per minute, with bursts up to the same number. */
  rateLimitPerMinute: number;
  /** Queued plus running jobs at a time. */
  maxActiveJobs: number;
  /** Bytes of uploaded inputs plus artifacts. */
  maxStoredBytes: number;
}

export const UNLIMITED: TenantLimits = {
  rateLimitPerMinute: 0,
  maxActiveJobs: 0,
  maxStoredBytes: 0,
};

/** Seconds sent in `Retry-After` after a quota or active-jobs rejection. */
const QUOTA_RETRY_AFTER_SECONDS = 60;

/**
 * Takes one token from a token bucket that holds at most ARGV[1] tokens and refills ARGV[2]
 * tokens per millisecond, timed by the Redis clock so that all API processes agree.
 * KEYS: bucket hash. Returns `{1, 0}` when a token was taken, else `{0, ms until one is back}`.
 */
const TAKE_TOKEN = new LuaScript(`
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local taken = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate) + 1000)
return {taken, wait}
`);

/**
 * Counts the tenant's jobs in the queued and running indexes. Records without a tenant field
 * belong to `default`.
 * KEYS: queued index, running index. ARGV: job hash prefix, tenant. Returns the count.
 */
const COUNT_ACTIVE = new LuaScript(`
local count = 0
for i = 1, 2 do
  for _, id in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do
    local tenant = redis.call('HGET', ARGV[1] .. id, 'tenant') or 'default'
    if tenant == ARGV[2] then count = count + 1 end
  end
end
return count
`);

export class TenantLimiter {
  readonly limits: TenantLimits;
  readonly #redis: Redis;
  readonly #keys: JobKeys;
  readonly #store: JobStore;

  constructor(redis: Redis, keys: JobKeys, store: JobStore, limits: TenantLimits) {
    this.#redis = redis;
    this.#keys = keys;
    this.#store = store;
    this.limits = limits;
  }

  /** Takes one request from the tenant's bucket; throws `RATE_LIMITED` when it is empty. */
  async takeRequest(tenant: string): Promise<void> {
    const perMinute = this.limits.rateLimitPerMinute;
    if (perMinute === 0) return;
    const [taken, waitMs] = (await TAKE_TOKEN.run(
      this.#redis,
      [this.#keys.tenantRateBucket(tenant)],
      [perMinute, perMinute / 60_000],
    )) as [number, number];
    if (taken === 1) return;
    throw ApiError.limited(
      "RATE_LIMITED",
      `Tenant ${JSON.stringify(tenant)} exceeded ${perMinute} requests per minute: retry after ${Math.ceil(waitMs / 1000)} s.`,
      waitMs / 1000,
    );
  }

  /** Throws `TOO_MANY_ACTIVE_JOBS` when the tenant already has the maximum queued plus running. */
  async checkActiveJobs(tenant: string): Promise<void> {
    const max = this.limits.maxActiveJobs;
    if (max === 0) return;
    const active = Number(
      await COUNT_ACTIVE.run(
        this.#redis,
        [this.#keys.byStatus("queued"), this.#keys.byStatus("running")],
        [`${this.#keys.prefix}:job:`, tenant],
      ),
    );
    if (active < max) return;
    throw ApiError.limited(
      "TOO_MANY_ACTIVE_JOBS",
      `Tenant ${JSON.stringify(tenant)} has ${active} queued or running jobs, the maximum is ${max}: wait for one to finish or cancel one.`,
      QUOTA_RETRY_AFTER_SECONDS,
    );
  }

  /** Bytes the tenant may still store, or `Infinity` without a quota. */
  async remainingStorage(tenant: string): Promise<number> {
    const max = this.limits.maxStoredBytes;
    if (max === 0) return Number.POSITIVE_INFINITY;
    return Math.max(0, max - (await this.#store.storedBytes(tenant)));
  }

  /** Throws `STORAGE_QUOTA_EXCEEDED` when storing `bytes` more would pass the tenant's quota. */
  async checkStorage(tenant: string, bytes: number): Promise<void> {
    const remaining = await this.remainingStorage(tenant);
    if (bytes <= remaining) return;
    throw quotaExceeded(tenant, this.limits.maxStoredBytes, remaining);
  }
}

export function quotaExceeded(tenant: string, quota: number, remaining: number): ApiError {
  return ApiError.limited(
    "STORAGE_QUOTA_EXCEEDED",
    `The upload exceeds the storage quota of tenant ${JSON.stringify(tenant)}: ${remaining} of ${quota} bytes are left. Delete finished jobs to free space.`,
    QUOTA_RETRY_AFTER_SECONDS,
  );
}

/** Applies the request rate limit to every `/v1/` request, after authentication. */
export function registerRateLimit(app: FastifyInstance, limiter: TenantLimiter): void {
  if (limiter.limits.rateLimitPerMinute === 0) return;
  app.addHook("onRequest", async (request) => {
    if (request.principal === null) return;
    await limiter.takeRequest(principalOf(request).tenant);
  });
}
