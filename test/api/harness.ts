/**
 * A complete service for API tests: a private Redis, storage in a temporary directory (or the
 * caller's), the API listening on a free port of 127.0.0.1, and an in-process worker. The API and
 * the worker start and stop separately, so tests can hold jobs in the queue or restart the API.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import { type Logger, pino } from "pino";
import { buildApiApp } from "../../src/api/app.ts";
import type { ApiKeyEntry } from "../../src/api/auth.ts";
import type { TenantLimits } from "../../src/api/limits.ts";
import { logConnectionErrors } from "../../src/jobs/connection-errors.ts";
import { JobKeys } from "../../src/jobs/keys.ts";
import { JobQueue, type RetryPolicy } from "../../src/jobs/queue.ts";
import { JobStore, type RetentionPolicy } from "../../src/jobs/store.ts";
import { connectRedis } from "../../src/redis/connect.ts";
import { LocalStorage } from "../../src/storage/local.ts";
import type { Storage } from "../../src/storage/types.ts";
import { CompressionWorker } from "../../workers/worker.ts";
import { startRedis, type TestRedis } from "../helpers/redis.ts";

export const PREFIX = "{pifa-test}";
export const RETENTION: RetentionPolicy = { maxAgeSeconds: 3600, maxCount: 1000 };
/** Short backoff so a retried job does not slow a test down. */
export const RETRY: RetryPolicy = { attempts: 2, backoffMs: 200 };

export interface HarnessOptions {
  /** Storage to use instead of local storage in a temporary directory. */
  storage?: Storage;
  maxUploadBytes?: number;
  heartbeatMs?: number;
  maxUploadParts?: number;
  uploadIdleSeconds?: number;
  /** API keys; none runs the single-user mode without authentication. */
  apiKeys?: readonly ApiKeyEntry[];
  tenantLimits?: TenantLimits;
  retention?: RetentionPolicy;
  /** Collects every log line at debug level, for tests that check what the worker did. */
  captureLogs?: boolean;
}

export class Harness {
  readonly redisServer: TestRedis;
  readonly redis: Redis;
  readonly storage: Storage;
  /** Root of the local storage, when the harness created it. */
  readonly storageRoot: string | undefined;
  readonly keys = new JobKeys(PREFIX);
  readonly store: JobStore;
  readonly options: HarnessOptions;
  readonly logger: Logger;
  /** Parsed log lines, when the harness was started with `captureLogs`. */
  readonly logs: Array<Record<string, unknown>> = [];
  #app: FastifyInstance | undefined;
  #queue: JobQueue | undefined;
  #worker: CompressionWorker | undefined;
  #workerConnection: Redis | undefined;
  url = "";

  private constructor(
    redisServer: TestRedis,
    storage: Storage,
    storageRoot: string | undefined,
    options: HarnessOptions,
  ) {
    this.redisServer = redisServer;
    this.logger = options.captureLogs
      ? pino({ level: "debug" }, this.#logCollector())
      : pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
    this.redis = connectRedis(redisServer.url, { connectionName: "test" });
    logConnectionErrors(this.redis, this.logger, "test");
    this.storage = storage;
    this.storageRoot = storageRoot;
    this.store = new JobStore(this.redis, this.keys, options.retention ?? RETENTION);
    this.options = options;
  }

  #logCollector(): Writable {
    return new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        for (const line of chunk.toString("utf8").split("\n")) {
          if (line.trim() !== "") this.logs.push(JSON.parse(line));
        }
        callback();
      },
    });
  }

  static async start(options: HarnessOptions = {}): Promise<Harness> {
    const redisServer = await startRedis();
    let storageRoot: string | undefined;
    let storage = options.storage;
    if (storage === undefined) {
      storageRoot = await mkdtemp(join(tmpdir(), "pifa-api-storage-"));
      storage = new LocalStorage(storageRoot);
    }
    return new Harness(redisServer, storage, storageRoot, options);
  }

  /** The running API app; throws when it is stopped. */
  get app(): FastifyInstance {
    if (this.#app === undefined) throw new Error("the API is not running: call startApi first");
    return this.#app;
  }

  /** Starts the API on a free loopback port and sets `url`. */
  async startApi(): Promise<string> {
    this.#queue = new JobQueue(this.redis, {
      prefix: PREFIX,
      retry: RETRY,
      retention: this.store.retention,
      logger: this.logger,
    });
    this.#app = await buildApiApp({
      redis: this.redis,
      keys: this.keys,
      store: this.store,
      queue: this.#queue,
      storage: this.storage,
      limits: {
        maxUploadBytes: this.options.maxUploadBytes ?? 64 * 1024 * 1024,
        heartbeatMs: this.options.heartbeatMs ?? 15_000,
        maxUploadParts: this.options.maxUploadParts,
        uploadIdleSeconds: this.options.uploadIdleSeconds,
      },
      apiKeys: this.options.apiKeys,
      tenantLimits: this.options.tenantLimits,
      logger: this.logger,
    });
    this.url = await this.#app.listen({ port: 0, host: "127.0.0.1" });
    return this.url;
  }

  async stopApi(): Promise<void> {
    await this.#app?.close();
    await this.#queue?.close();
    this.#app = undefined;
    this.#queue = undefined;
  }

  startWorker(): CompressionWorker {
    this.#workerConnection = connectRedis(this.redisServer.url, {
      forWorker: true,
      connectionName: "test-worker",
    });
    logConnectionErrors(this.#workerConnection, this.logger, "test-worker");
    this.#worker = new CompressionWorker({
      connection: this.#workerConnection,
      store: new JobStore(this.#workerConnection, this.keys, this.store.retention),
      storage: this.storage,
      prefix: PREFIX,
      retry: RETRY,
      retention: this.store.retention,
      logger: this.logger,
    });
    return this.#worker;
  }

  async stopWorker(): Promise<void> {
    await this.#worker?.close();
    await this.#workerConnection?.quit();
    this.#worker = undefined;
    this.#workerConnection = undefined;
  }

  async stop(): Promise<void> {
    await this.stopApi();
    await this.stopWorker();
    await this.redis.quit();
    await this.redisServer.stop();
    if (this.storageRoot) await rm(this.storageRoot, { recursive: true, force: true });
  }
}
