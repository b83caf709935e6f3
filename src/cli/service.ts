/**
 * Assembles the service from its configuration: Redis (embedded or external), storage, the job
 * store, and the API and/or the worker. `stop` shuts everything down in dependency order.
 */

import type { Redis } from "ioredis";
import type { Logger } from "pino";
import {
  listenForMetrics,
  loadWorkerMetricsSettings,
  WorkerMetrics,
} from "../../workers/metrics.ts";
import { CompressionWorker } from "../../workers/worker.ts";
import { buildApiApp } from "../api/app.ts";
import type { Config } from "../config.ts";
import { logConnectionErrors } from "../jobs/connection-errors.ts";
import { loadFlowSettings } from "../jobs/flow.ts";
import { JobKeys } from "../jobs/keys.ts";
import { JobQueue, type RetryPolicy } from "../jobs/queue.ts";
import { JobStore, type RetentionPolicy } from "../jobs/store.ts";
import { setThreads } from "../native/index.ts";
import {
  checkEvictionPolicy,
  connectRedis,
  type EmbeddedRedis,
  startEmbeddedRedis,
} from "../redis/index.ts";
import { createStorage } from "../storage/index.ts";

export interface ServiceRoles {
  api: boolean;
  worker: boolean;
}

export interface RunningService {
  /** `http://host:port` of the API, when this process runs it. */
  url?: string;
  /** Stops accepting requests, finishes in-flight ones, hands running jobs back, closes connections. */
  stop(): Promise<void>;
}

/**
 * pino redact paths: credentials in request headers and AWS keys in any logged object one or two
 * levels deep, such as an S3 client configuration inside an error.
 */
export const LOG_REDACT_PATHS = [
  "req.headers.authorization",
  'req.headers["x-api-key"]',
  "req.headers.cookie",
  'res.headers["set-cookie"]',
  "*.accessKeyId",
  "*.secretAccessKey",
  "*.sessionToken",
  "*.*.accessKeyId",
  "*.*.secretAccessKey",
  "*.*.sessionToken",
];

/** Infrastructure errors are retried twice, after 10 s and 20 s, before a job fails. */
export const RETRY_POLICY: RetryPolicy = { attempts: 3, backoffMs: 10_000 };

/** Milliseconds between SSE heartbeat comments. */
const HEARTBEAT_MS = 15_000;

/** Stops started parts in reverse order; each failure is logged and the rest still stop. */
class Shutdown {
  readonly #steps: Array<{ name: string; run: () => Promise<unknown> }> = [];
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  add(name: string, run: () => Promise<unknown>): void {
    this.#steps.push({ name, run });
  }

  async run(): Promise<void> {
    for (const step of this.#steps.reverse()) {
      try {
        await step.run();
      } catch (error) {
        this.#logger.error({ err: error, step: step.name }, "Shutdown step failed");
      }
    }
  }
}

async function openRedis(config: Config, shutdown: Shutdown, logger: Logger): Promise<string> {
  if (config.redis.mode === "external") return config.redis.url;
  const embedded: EmbeddedRedis = await startEmbeddedRedis({
    dataDir: config.redis.dataDir,
    logger,
  });
  shutdown.add("embedded Redis", () => embedded.stop());
  return embedded.url;
}

async function connect(
  url: string,
  name: string,
  forWorker: boolean,
  shutdown: Shutdown,
  logger: Logger,
): Promise<Redis> {
  const redis = connectRedis(url, { connectionName: name, forWorker });
  logConnectionErrors(redis, logger, name);
  shutdown.add(`Redis connection ${name}`, () => redis.quit());
  await checkEvictionPolicy(redis);
  return redis;
}

/**
 * Starts the requested roles. `pifa serve` runs both with an embedded Redis by default; the API
 * and worker roles alone need `REDIS_URL`, because they only work together through one Redis.
 */
export async function startService(
  config: Config,
  roles: ServiceRoles,
  logger: Logger,
): Promise<RunningService> {
  if (!(roles.api && roles.worker) && config.redis.mode === "embedded") {
    throw new Error(
      "REDIS_URL is not set: `pifa api` and `pifa worker` share jobs through one Redis, so each needs REDIS_URL to point at it. Run `pifa serve` to get both roles with an embedded Redis.",
    );
  }
  const shutdown = new Shutdown(logger);
  try {
    const redisUrl = await openRedis(config, shutdown, logger);
    const storage = createStorage(config.storage.url, { logger });
    await storage.ping();
    const keys = new JobKeys(config.queuePrefix);
    const retention: RetentionPolicy = {
      maxAgeSeconds: config.jobRetentionSeconds,
      maxCount: config.jobRetentionCount,
    };

    let url: string | undefined;
    if (roles.worker) {
      setThreads(config.blasThreads);
      // Read here, not in Config, because only the worker role uses them.
      const flow = loadFlowSettings(process.env);
      const metricsSettings = loadWorkerMetricsSettings(process.env);
      const metrics = new WorkerMetrics();
      if (metricsSettings.port !== undefined) {
        const listener = await listenForMetrics(
          metrics.registry,
          metricsSettings.port,
          metricsSettings.host,
          logger,
        );
        // Added before the worker, so it stops last and serves metrics while jobs hand back.
        shutdown.add("worker metrics listener", () => listener.close());
      }
      const connection = await connect(redisUrl, "pifa-worker", true, shutdown, logger);
      const worker = new CompressionWorker({
        connection,
        store: new JobStore(connection, keys, retention),
        storage,
        prefix: config.queuePrefix,
        retry: RETRY_POLICY,
        retention,
        logger,
        concurrency: config.workerConcurrency,
        lockDurationMs: config.lockDurationMs,
        layersPerChild: flow.layersPerChild,
        maxDataAwareJobs: flow.maxDataAwareJobs,
        metrics,
      });
      shutdown.add("worker", () => worker.close());
    }
    if (roles.api) {
      const redis = await connect(redisUrl, "pifa-api", false, shutdown, logger);
      const queue = new JobQueue(redis, {
        prefix: config.queuePrefix,
        retry: RETRY_POLICY,
        retention,
        logger,
      });
      shutdown.add("queue", () => queue.close());
      const app = await buildApiApp({
        redis,
        keys,
        store: new JobStore(redis, keys, retention),
        queue,
        storage,
        limits: {
          maxUploadBytes: config.maxUploadBytes,
          heartbeatMs: HEARTBEAT_MS,
          maxUploadParts: config.maxUploadParts,
          uploadIdleSeconds: config.uploadIdleSeconds,
        },
        apiKeys: config.apiKeys,
        tenantLimits: {
          rateLimitPerMinute: config.rateLimitPerMinute,
          maxActiveJobs: config.maxActiveJobsPerTenant,
          maxStoredBytes: config.maxStoredBytesPerTenant,
        },
        logger,
      });
      // Closed first on shutdown: no new requests, and in-flight ones finish before the rest stops.
      shutdown.add("HTTP server", () => app.close());
      url = await app.listen({ host: config.host, port: config.port });
    }
    return { url, stop: () => shutdown.run() };
  } catch (error) {
    await shutdown.run();
    throw error;
  }
}
