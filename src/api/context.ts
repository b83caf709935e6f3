import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { EventHub } from "../jobs/events.ts";
import type { JobKeys } from "../jobs/keys.ts";
import type { JobQueue } from "../jobs/queue.ts";
import type { JobStore } from "../jobs/store.ts";
import type { Storage } from "../storage/types.ts";
import type { TenantLimiter } from "./limits.ts";

/** Limits the API enforces on requests. */
export interface ApiLimits {
  /** Maximum total bytes of all parts of one upload; a larger upload gets 413. */
  maxUploadBytes: number;
  /** Milliseconds between SSE heartbeat comments. */
  heartbeatMs: number;
  /** Maximum multipart parts of one upload (default 256); more gets 413 `TOO_MANY_PARTS`. */
  maxUploadParts?: number;
  /** Seconds an upload may send no bytes before its connection is closed (default 60). */
  uploadIdleSeconds?: number;
}

/** Everything the routes share: connections, the job store and queue, and limits. */
export interface ApiContext {
  redis: Redis;
  keys: JobKeys;
  store: JobStore;
  queue: JobQueue;
  storage: Storage;
  events: EventHub;
  /** Event streams still open; the app waits for them to end when it closes. */
  openStreams: Set<Promise<void>>;
  limits: ApiLimits;
  tenantLimiter: TenantLimiter;
  logger: Logger;
}
