import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { z } from "zod";
import { redactRedisUrl } from "./redis/url.ts";
import { parseStorageUrl } from "./storage/url.ts";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Service configuration, read once from the environment by `loadConfig`. */
export interface Config {
  /** Address the HTTP server listens on (`HOST`). */
  readonly host: string;
  /** HTTP port (`PORT`); 0 lets the OS pick one. */
  readonly port: number;
  /** Absolute data directory (`PIFA_DATA_DIR`) for local storage and the embedded Redis. */
  readonly dataDir: string;
  /** Storage location of uploads and artifacts (`PIFA_STORAGE_URL`); `createStorage` takes its `url`. */
  readonly storage: Readonly<
    { kind: "local"; url: string; dir: string } | { kind: "s3"; url: string }
  >;
  /** External Redis from `REDIS_URL`, or the embedded one with its data directory. */
  readonly redis: Readonly<
    { mode: "external"; url: string } | { mode: "embedded"; dataDir: string }
  >;
  /** pino log level (`LOG_LEVEL`). */
  readonly logLevel: LogLevel;
  /** Threads for BLAS and LAPACK calls (`PIFA_BLAS_THREADS`). */
  readonly blasThreads: number;
  /** Largest accepted upload in bytes (`PIFA_MAX_UPLOAD_BYTES`). */
  readonly maxUploadBytes: number;
  /** Age in seconds after which finished jobs are removed from Redis (`PIFA_JOB_RETENTION_SECONDS`). */
  readonly jobRetentionSeconds: number;
  /** Number of finished jobs kept in Redis at most (`PIFA_JOB_RETENTION_COUNT`). */
  readonly jobRetentionCount: number;
  /** BullMQ key prefix (`PIFA_QUEUE_PREFIX`). */
  readonly queuePrefix: string;
  /** Jobs one worker process runs at a time (`PIFA_WORKER_CONCURRENCY`). */
  readonly workerConcurrency: number;
}

/** One invalid variable: its name, its value as safe to print, and the expected form. */
export interface ConfigIssue {
  variable: string;
  value: string;
  expected: string;
}

/** Raised by `loadConfig` with every invalid variable listed, one per line. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly issues: readonly ConfigIssue[];

  constructor(issues: ConfigIssue[]) {
    const lines = issues.map(
      (issue) => `  ${issue.variable}=${issue.value}: expected ${issue.expected}`,
    );
    super(`Invalid configuration in the environment:\n${lines.join("\n")}`);
    this.issues = issues;
  }
}

const SECRET_NAME = /KEY|SECRET|PASSWORD|TOKEN/i;

/**
 * Returns the value of `variable` as safe to print: `<redacted>` for variables whose name
 * contains KEY, SECRET, PASSWORD or TOKEN, otherwise the quoted value with the password of any
 * URL userinfo replaced.
 */
export function displayValue(variable: string, value: string): string {
  return SECRET_NAME.test(variable) ? "<redacted>" : JSON.stringify(redactRedisUrl(value));
}

const GiB = 1024 ** 3;
const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: GiB,
  tib: 1024 ** 4,
};

function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return z
    .string()
    .trim()
    .regex(/^[0-9]+$/)
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
}

const byteSize = z
  .string()
  .trim()
  .regex(/^[0-9]+\s*(b|kib|mib|gib|tib)?$/i)
  .transform((text) => {
    const [, digits = "", unit = "b"] = /^([0-9]+)\s*([a-z]*)$/i.exec(text) ?? [];
    return Number(digits) * (BYTE_UNITS[unit.toLowerCase()] ?? 1);
  })
  .pipe(z.number().int().min(1).max(Number.MAX_SAFE_INTEGER));

const host = z.union([z.ipv4(), z.ipv6(), z.hostname()]);

const storageUrl = z
  .string()
  .trim()
  .refine((url) => {
    try {
      parseStorageUrl(url);
      return true;
    } catch {
      return false;
    }
  });

const redisUrl = z.url({ protocol: /^rediss?$/, hostname: /^.+$/ });

// Braces, if any, must hold one non-empty Redis Cluster hash tag so that all of a queue's keys
// map to one slot.
const queuePrefix = z
  .string()
  .regex(/^\S+$/)
  .refine((prefix) => !/[{}]/.test(prefix) || /^[^{}]*\{[^{}]+\}[^{}]*$/.test(prefix));

const logLevel = z
  .string()
  .trim()
  .transform((level) => level.toLowerCase())
  .pipe(z.enum(LOG_LEVELS));

/** Collects parsed values and the issues of invalid ones. */
class EnvironmentReader {
  readonly issues: ConfigIssue[] = [];
  readonly #env: NodeJS.ProcessEnv;

  constructor(env: NodeJS.ProcessEnv) {
    this.#env = env;
  }

  /** Returns the parsed variable, `fallback` when it is unset or blank, and records an issue when it is invalid. */
  read<T>(variable: string, schema: z.ZodType<T>, expected: string, fallback: T): T {
    const raw = this.#env[variable];
    if (raw === undefined || raw.trim() === "") {
      return fallback;
    }
    const result = schema.safeParse(raw);
    if (result.success) {
      return result.data;
    }
    this.issues.push({ variable, value: displayValue(variable, raw), expected });
    return fallback;
  }

  optional<T>(variable: string, schema: z.ZodType<T>, expected: string): T | undefined {
    return this.read<T | undefined>(variable, schema, expected, undefined);
  }
}

/** Resolves the storage location; without a URL it is local storage at `<dataDir>/storage`. */
function storageSettings(url: string | undefined, dataDir: string): Config["storage"] {
  if (url === undefined) {
    const dir = join(dataDir, "storage");
    return { kind: "local", url: pathToFileURL(dir).href, dir };
  }
  const location = parseStorageUrl(url);
  return location.kind === "local"
    ? { kind: "local", url, dir: location.root }
    : { kind: "s3", url };
}

/**
 * Reads and validates the service configuration from environment variables. Unset or blank
 * variables take their defaults; relative paths resolve against the current directory. Throws a
 * `ConfigError` naming every invalid variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const reader = new EnvironmentReader(env);

  const dataDir = resolve(reader.read("PIFA_DATA_DIR", z.string(), "a directory path", "./data"));
  const storageUrlValue = reader.optional(
    "PIFA_STORAGE_URL",
    storageUrl,
    'an S3 location "s3://bucket/optional/prefix" (bucket: 3 to 63 lowercase letters, digits, dots or hyphens) or "file:///absolute/directory"',
  );
  const redisUrlValue = reader.optional(
    "REDIS_URL",
    redisUrl,
    "a Redis URL redis://[user:password@]host[:port][/db], or rediss://... for TLS",
  );

  const config: Config = {
    host: reader.read("HOST", host, "an IPv4 address, an IPv6 address or a hostname", "127.0.0.1"),
    port: reader.read("PORT", integer(0, 65535), "an integer from 0 to 65535", 8080),
    dataDir,
    storage: storageSettings(storageUrlValue, dataDir),
    redis: redisUrlValue
      ? { mode: "external", url: redisUrlValue }
      : { mode: "embedded", dataDir: join(dataDir, "redis") },
    logLevel: reader.read("LOG_LEVEL", logLevel, `one of ${LOG_LEVELS.join(", ")}`, "info"),
    blasThreads: reader.read(
      "PIFA_BLAS_THREADS",
      integer(1),
      "a positive integer",
      availableParallelism(),
    ),
    maxUploadBytes: reader.read(
      "PIFA_MAX_UPLOAD_BYTES",
      byteSize,
      "a positive whole number of bytes, optionally with a unit B, KiB, MiB, GiB or TiB (such as 68719476736 or 64GiB)",
      64 * GiB,
    ),
    jobRetentionSeconds: reader.read(
      "PIFA_JOB_RETENTION_SECONDS",
      integer(0),
      "a non-negative integer number of seconds",
      7 * 24 * 60 * 60,
    ),
    jobRetentionCount: reader.read(
      "PIFA_JOB_RETENTION_COUNT",
      integer(0),
      "a non-negative integer",
      1000,
    ),
    queuePrefix: reader.read(
      "PIFA_QUEUE_PREFIX",
      queuePrefix,
      'a prefix without whitespace; braces, if any, must enclose one non-empty Redis Cluster hash tag such as "{pifa}"',
      "{pifa}",
    ),
    workerConcurrency: reader.read("PIFA_WORKER_CONCURRENCY", integer(1), "a positive integer", 1),
  };

  if (reader.issues.length > 0) {
    throw new ConfigError(reader.issues);
  }
  Object.freeze(config.storage);
  Object.freeze(config.redis);
  return Object.freeze(config);
}
