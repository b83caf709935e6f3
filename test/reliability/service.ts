/**
 * A service under test for the reliability suites. Its embedded Redis can be stopped and started
 * again on the same port and append-only file, and its local storage counts the layer saves it
 * receives. The API listens on a free loopback port, and workers run in this process or as `pifa
 * worker` child processes.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import type { FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import { type Logger, pino } from "pino";
import { buildApiApp } from "../../src/api/app.ts";
import { logConnectionErrors } from "../../src/jobs/connection-errors.ts";
import { JobKeys } from "../../src/jobs/keys.ts";
import { JobQueue, type RetryPolicy } from "../../src/jobs/queue.ts";
import { JobStore, type RetentionPolicy } from "../../src/jobs/store.ts";
import { setThreads } from "../../src/native/index.ts";
import { connectRedis } from "../../src/redis/connect.ts";
import { type EmbeddedRedis, startEmbeddedRedis } from "../../src/redis/embedded.ts";
import { LocalStorage } from "../../src/storage/local.ts";
import type { PutOptions, PutResult } from "../../src/storage/types.ts";
import { CompressionWorker } from "../../workers/worker.ts";

export const PREFIX = "{pifa-reliability}";
const RETENTION: RetentionPolicy = { maxAgeSeconds: 3600, maxCount: 1000 };
const RETRY: RetryPolicy = { attempts: 2, backoffMs: 200 };
const REPOSITORY = join(import.meta.dirname, "..", "..");

/** Local storage that counts every `put` under a `jobs/<id>/layers/` prefix, by key. */
export class CountingStorage extends LocalStorage {
  readonly layerPuts = new Map<string, number>();

  override async put(key: string, body: Readable, options?: PutOptions): Promise<PutResult> {
    const result = await super.put(key, body, options);
    if (/^jobs\/[^/]+\/layers\//.test(key)) {
      this.layerPuts.set(key, (this.layerPuts.get(key) ?? 0) + 1);
    }
    return result;
  }
}

/** A `pifa worker` child process and the JSON log lines it has written so far. */
export interface ChildWorker {
  process: ChildProcess;
  logs: Array<Record<string, unknown>>;
  exited: Promise<void>;
}

export class ReliabilityService {
  readonly root: string;
  readonly storageRoot: string;
  readonly storage: CountingStorage;
  readonly keys = new JobKeys(PREFIX);
  readonly logger: Logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
  redisServer: EmbeddedRedis;
  readonly redis: Redis;
  readonly store: JobStore;
  url = "";
  #app: FastifyInstance | undefined;
  #queue: JobQueue | undefined;
  readonly #workers: Array<{ worker: CompressionWorker; connection: Redis }> = [];
  readonly #children: ChildWorker[] = [];

  private constructor(root: string, redisServer: EmbeddedRedis) {
    this.root = root;
    this.storageRoot = join(root, "storage");
    this.storage = new CountingStorage(this.storageRoot);
    this.redisServer = redisServer;
    this.redis = connectRedis(redisServer.url, { connectionName: "reliability-test" });
    logConnectionErrors(this.redis, this.logger, "reliability-test");
    this.store = new JobStore(this.redis, this.keys, RETENTION);
  }

  /**
   * Starts Redis and the API. BLAS runs on one thread in this process, as in the child workers,
   * so artifacts compare byte for byte with `referenceSafetensors`.
   */
  static async start(): Promise<ReliabilityService> {
    setThreads(1);
    const root = await mkdtemp(join(tmpdir(), "pifa-reliability-"));
    const redisServer = await startEmbeddedRedis({ dataDir: join(root, "redis") });
    const service = new ReliabilityService(root, redisServer);
    await service.startApi();
    return service;
  }

  async startApi(): Promise<void> {
    this.#queue = new JobQueue(this.redis, {
      prefix: PREFIX,
      retry: RETRY,
      retention: RETENTION,
      logger: this.logger,
    });
    this.#app = await buildApiApp({
      redis: this.redis,
      keys: this.keys,
      store: this.store,
      queue: this.#queue,
      storage: this.storage,
      limits: { maxUploadBytes: 256 * 1024 * 1024, heartbeatMs: 15_000 },
      logger: this.logger,
    });
    this.url = await this.#app.listen({ port: 0, host: "127.0.0.1" });
  }

  /**
   * Starts a worker in this process on its own connection, with the given lock duration and
   * layers per layer-group child job (0 runs every layer in the job itself).
   */
  startWorker(lockDurationMs?: number, layersPerChild?: number): CompressionWorker {
    const connection = connectRedis(this.redisServer.url, {
      forWorker: true,
      connectionName: "reliability-worker",
    });
    logConnectionErrors(connection, this.logger, "reliability-worker");
    const worker = new CompressionWorker({
      connection,
      store: new JobStore(connection, this.keys, RETENTION),
      storage: this.storage,
      prefix: PREFIX,
      retry: RETRY,
      retention: RETENTION,
      logger: this.logger,
      lockDurationMs,
      layersPerChild,
    });
    this.#workers.push({ worker, connection });
    return worker;
  }

  /** Starts `pifa worker` as a child process on this Redis and storage, logging at debug level. */
  startChildWorker(lockDurationMs: number): ChildWorker {
    const child = spawn(process.execPath, [join(REPOSITORY, "bin", "pifa.js"), "worker"], {
      cwd: REPOSITORY,
      env: {
        ...process.env,
        REDIS_URL: this.redisServer.url,
        PIFA_STORAGE_URL: pathToFileURL(this.storageRoot).href,
        PIFA_DATA_DIR: join(this.root, "worker-data"),
        PIFA_QUEUE_PREFIX: PREFIX,
        PIFA_LOCK_DURATION_MS: String(lockDurationMs),
        PIFA_BLAS_THREADS: "1",
        LOG_LEVEL: "debug",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const logs: Array<Record<string, unknown>> = [];
    let pending = "";
    child.stdout?.on("data", (data: Buffer) => {
      pending += data.toString("utf8");
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (line.trim() !== "") logs.push(JSON.parse(line));
      }
    });
    let stderr = "";
    child.stderr?.on("data", (data: Buffer) => {
      stderr = (stderr + data.toString("utf8")).slice(-4000);
    });
    const exited = new Promise<void>((resolve) => {
      child.once("exit", (code, signal) => {
        if (code !== 0 && signal === null) {
          this.logger.error({ code, stderr }, "pifa worker child exited with an error");
        }
        resolve();
      });
    });
    const worker = { process: child, logs, exited };
    this.#children.push(worker);
    return worker;
  }

  /** Stops the embedded Redis with SIGTERM and starts it again on the same port and data. */
  async restartRedis(downtimeMs: number): Promise<void> {
    const { port } = this.redisServer;
    await this.redisServer.stop();
    await new Promise((wake) => setTimeout(wake, downtimeMs));
    this.redisServer = await startEmbeddedRedis({ dataDir: join(this.root, "redis"), port });
  }

  /** Keys under `prefix` in storage, sorted. */
  async storedKeys(prefix: string): Promise<string[]> {
    return (await this.storage.list(prefix)).map((object) => object.key).sort();
  }

  async stop(): Promise<void> {
    for (const child of this.#children) {
      if (child.process.exitCode === null && child.process.signalCode === null) {
        child.process.kill("SIGTERM");
      }
      await child.exited;
    }
    await this.#app?.close();
    await this.#queue?.close();
    for (const { worker, connection } of this.#workers) {
      await worker.close();
      await connection.quit();
    }
    await this.redis.quit();
    await this.redisServer.stop();
    await rm(this.root, { recursive: true, force: true });
  }
}
