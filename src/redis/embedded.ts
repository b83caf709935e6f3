import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, open, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Redis } from "ioredis";
import { findFreePort } from "./free-port.ts";
import type { RedisLogger } from "./logger.ts";

export interface EmbeddedRedisOptions {
  /** Directory for the append-only file; created if missing. */
  dataDir: string;
  /** Port to bind on 127.0.0.1; when absent a free port is picked, and start is retried on a port conflict. */
  port?: number;
  /** Executable to run; defaults to `redis-server` found on PATH. */
  command?: string;
  /** Environment of the child process, and the PATH used to find `command`; defaults to `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** How long to wait for the first PONG, in milliseconds; loading a large append-only file takes a while. Default 30,000. */
  startTimeoutMs?: number;
  logger?: RedisLogger;
}

export interface EmbeddedRedis {
  /** `redis://127.0.0.1:<port>` */
  url: string;
  port: number;
  pid: number;
  /** Resolves when the redis-server process exits, whether through `stop` or not. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends SIGTERM (Redis then flushes the append-only file) and waits for the exit; SIGKILL follows after 10 s. */
  stop(): Promise<void>;
}

export type EmbeddedRedisFailure =
  | "NOT_INSTALLED"
  | "PORT_IN_USE"
  | "EXITED"
  | "TIMEOUT"
  | "DATA_DIR_IN_USE";

export class EmbeddedRedisError extends Error {
  override readonly name = "EmbeddedRedisError";
  readonly reason: EmbeddedRedisFailure;

  constructor(reason: EmbeddedRedisFailure, message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.reason = reason;
  }
}

const MAX_PORT_ATTEMPTS = 5;
const STOP_TIMEOUT_MS = 10_000;
const PING_INTERVAL_MS = 50;
const OUTPUT_LINES_KEPT = 40;

// Children still running, so that they can be stopped when this process exits.
const runningChildren = new Set<ChildProcess>();
let exitHandlerInstalled = false;

function trackChild(child: ChildProcess): void {
  if (!exitHandlerInstalled) {
    // Only synchronous work is possible in an 'exit' handler; SIGTERM lets each Redis flush its
    // append-only file on its own. NOTE: a parent killed by SIGKILL runs no handler, and its
    // redis-server keeps running until killed by hand.
    process.on("exit", () => {
      for (const running of runningChildren) {
        running.kill("SIGTERM");
      }
    });
    exitHandlerInstalled = true;
  }
  runningChildren.add(child);
  child.once("exit", () => runningChildren.delete(child));
}

/** File in the data directory that names the process using it. */
const LOCK_FILE = "pifa-redis.lock";

interface LockContents {
  /** The process that started the Redis; the lock's owner until `redisPid` is known. */
  ownerPid: number;
  /** The redis-server child, which keeps the append-only file open for as long as it runs. */
  redisPid?: number;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Returns the live process a lock names, or undefined for a stale or unreadable lock. */
async function lockHolder(path: string): Promise<LockContents | undefined> {
  let contents: LockContents;
  try {
    contents = JSON.parse(await readFile(path, "utf8")) as LockContents;
  } catch {
    return undefined;
  }
  const pid = contents.redisPid ?? contents.ownerPid;
  return Number.isInteger(pid) && isRunning(pid) ? contents : undefined;
}

/**
 * Claims `dataDir` for one embedded Redis. Two servers appending to one append-only file corrupt
 * it, so a second start on a directory whose Redis still runs fails with `DATA_DIR_IN_USE`. A lock
 * left by processes that are gone is replaced.
 */
async function lockDataDir(dataDir: string): Promise<string> {
  const path = join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, "wx");
      await handle.writeFile(JSON.stringify({ ownerPid: process.pid } satisfies LockContents));
      await handle.close();
      return path;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = await lockHolder(path);
    if (holder !== undefined) {
      const holderText =
        holder.redisPid === undefined
          ? `process ${holder.ownerPid} is starting a Redis there`
          : `redis-server ${holder.redisPid}, started by process ${holder.ownerPid}, still runs there`;
      throw new EmbeddedRedisError(
        "DATA_DIR_IN_USE",
        `The data directory ${dataDir} is in use: ${holderText}. Stop that service first, or give this one its own data directory (PIFA_DATA_DIR).`,
      );
    }
    await rm(path, { force: true });
  }
  throw new EmbeddedRedisError(
    "DATA_DIR_IN_USE",
    `Could not claim ${join(dataDir, LOCK_FILE)}: another process keeps creating it. Stop the other service on ${dataDir}.`,
  );
}

/** Removes the lock if it still names `redisPid`. */
async function releaseLock(path: string, redisPid: number): Promise<void> {
  try {
    const contents = JSON.parse(await readFile(path, "utf8")) as LockContents;
    if (contents.redisPid === redisPid) await rm(path, { force: true });
  } catch {
    // Already gone or replaced by a newer start.
  }
}

function redisArguments(port: number, dataDir: string): string[] {
  return [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--protected-mode",
    "yes",
    "--dir",
    dataDir,
    "--appendonly",
    "yes",
    // Snapshots are off: the append-only file alone is the persistence.
    "--save",
    "",
    // BullMQ loses jobs when Redis evicts keys, so memory pressure must fail writes instead.
    "--maxmemory-policy",
    "noeviction",
    "--daemonize",
    "no",
  ];
}

/** Keeps the last lines a child wrote, for error messages, and forwards each to the debug log. */
function collectOutput(child: ChildProcess, logger: RedisLogger | undefined): () => string {
  const lines: string[] = [];
  const onData = (data: Buffer) => {
    for (const line of data.toString("utf8").split("\n")) {
      if (line.trim() === "") {
        continue;
      }
      logger?.debug({ pid: child.pid, line }, "redis-server output");
      lines.push(line);
      if (lines.length > OUTPUT_LINES_KEPT) {
        lines.shift();
      }
    }
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  return () => lines.join("\n");
}

/**
 * Returns true once the server on `port` replies to PING and reports `pid` as its process id. The
 * pid check keeps another server that already listens on the port from passing for the child.
 */
async function repliesToPing(port: number, pid: number): Promise<boolean> {
  const client = new Redis({
    host: "127.0.0.1",
    port,
    lazyConnect: true,
    connectTimeout: 1000,
    commandTimeout: 1000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // Refused connections while the server starts are expected; the loop below retries them.
  client.on("error", () => {});
  try {
    // connect() waits for the ready check, which waits while Redis is still loading its data.
    await client.connect();
    if ((await client.ping()) !== "PONG") {
      return false;
    }
    return /^process_id:(\d+)/m.exec(await client.info("server"))?.[1] === String(pid);
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

async function startOnce(
  port: number,
  dataDir: string,
  options: EmbeddedRedisOptions,
): Promise<EmbeddedRedis> {
  const command = options.command ?? "redis-server";
  const logger = options.logger;
  const child = spawn(command, redisArguments(port, dataDir), {
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (child.pid === undefined) {
    // No process was created; 'error' follows on the next tick with the reason.
    const error = await new Promise<NodeJS.ErrnoException>((resolveError) =>
      child.once("error", resolveError),
    );
    if (error.code === "ENOENT") {
      throw new EmbeddedRedisError(
        "NOT_INSTALLED",
        `${command} was not found on PATH. Install the Debian package redis-server (apt-get install redis-server), or set REDIS_URL to use an external Redis.`,
        { cause: error },
      );
    }
    throw new EmbeddedRedisError("EXITED", `Failed to start ${command}: ${error.message}`, {
      cause: error,
    });
  }
  child.once("error", (error) => {
    logger?.error({ pid: child.pid, error: error.message }, "redis-server child process error");
  });
  const output = collectOutput(child, logger);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
    (resolveExit) => {
      child.once("close", (code, signal) => resolveExit({ code, signal }));
    },
  );
  let exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((status) => {
    exitStatus = status;
  });
  trackChild(child);

  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  for (;;) {
    if (exitStatus) {
      const text = output();
      const reason = /address already in use/i.test(text) ? "PORT_IN_USE" : "EXITED";
      throw new EmbeddedRedisError(
        reason,
        `redis-server on port ${port} exited before replying to PING (code ${exitStatus.code}, signal ${exitStatus.signal}). Its last output:\n${text}`,
      );
    }
    if (await repliesToPing(port, child.pid)) {
      break;
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await exited;
      throw new EmbeddedRedisError(
        "TIMEOUT",
        `redis-server on port ${port} did not reply to PING within ${options.startTimeoutMs ?? 30_000} ms. Its last output:\n${output()}`,
      );
    }
    await new Promise((wake) => setTimeout(wake, PING_INTERVAL_MS));
  }

  let stopping: Promise<void> | undefined;
  void exited.then((status) => {
    if (!stopping) {
      logger?.error(
        { pid: child.pid, port, ...status, output: output() },
        "Embedded redis-server exited unexpectedly",
      );
    }
  });
  const pid = child.pid;
  logger?.info({ pid, port, dataDir }, "Embedded redis-server started");
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid,
    exited,
    stop() {
      stopping ??= (async () => {
        if (!exitStatus) {
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
          await exited;
          clearTimeout(timer);
        }
        logger?.info({ pid, port, ...exitStatus }, "Embedded redis-server stopped");
      })();
      return stopping;
    },
  };
}

/**
 * Starts a private `redis-server` child process on 127.0.0.1, persisting to an append-only file
 * in `dataDir`, with eviction off and snapshots off, and resolves once it replies to PING. The child
 * receives SIGTERM when this process exits normally.
 *
 * Redis cannot bind port 0, so without `options.port` a free port is picked first and the start
 * is retried on another one if some other process takes it in between.
 *
 * A lock file in `dataDir` keeps a second embedded Redis out while the first one's
 * redis-server runs (`DATA_DIR_IN_USE`).
 */
export async function startEmbeddedRedis(options: EmbeddedRedisOptions): Promise<EmbeddedRedis> {
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  const lock = await lockDataDir(dataDir);
  const attempts = options.port === undefined ? MAX_PORT_ATTEMPTS : 1;
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await findFreePort());
    try {
      const redis = await startOnce(port, dataDir, options);
      await writeFile(
        lock,
        JSON.stringify({ ownerPid: process.pid, redisPid: redis.pid } satisfies LockContents),
      );
      // The lock goes once the child has exited, however it exits, unless a newer Redis took it.
      void redis.exited.then(() => releaseLock(lock, redis.pid));
      return redis;
    } catch (error) {
      if (
        !(error instanceof EmbeddedRedisError && error.reason === "PORT_IN_USE") ||
        attempt >= attempts
      ) {
        await rm(lock, { force: true });
        throw error;
      }
      options.logger?.warn(
        { port, attempt },
        "Port taken before redis-server could bind it; retrying on another port",
      );
    }
  }
}
