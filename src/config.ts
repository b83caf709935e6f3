import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { z } from "zod";
import { type ApiKeyEntry, hashApiKey } from "./api/auth.ts";
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
  /**
   * BullMQ job lock duration in milliseconds (`PIFA_LOCK_DURATION_MS`): a crashed worker's job is
   * picked up again after about this long, and the stalled-job check runs at this interval (30 s
   * at most).
   */
  readonly lockDurationMs: number;
  /**
   * SHA-256 digests of the API keys with their tenants (`PIFA_API_KEYS`, `PIFA_ADMIN_KEYS` or their
   * `_FILE` variants). Empty means the single-user mode without authentication.
   */
  readonly apiKeys: readonly ApiKeyEntry[];
  /** Requests per minute per tenant (`PIFA_RATE_LIMIT_PER_MINUTE`); 0 means unlimited. */
  readonly rateLimitPerMinute: number;
  /** Queued plus running jobs per tenant (`PIFA_MAX_ACTIVE_JOBS_PER_TENANT`); 0 means unlimited. */
  readonly maxActiveJobsPerTenant: number;
  /** Uploaded plus artifact bytes per tenant (`PIFA_MAX_STORED_BYTES_PER_TENANT`); 0 means unlimited. */
  readonly maxStoredBytesPerTenant: number;
  /** Multipart parts (fields and files) per upload (`PIFA_MAX_UPLOAD_PARTS`). */
  readonly maxUploadParts: number;
  /** Seconds an upload may send no bytes before its connection is closed (`PIFA_UPLOAD_IDLE_SECONDS`). */
  readonly uploadIdleSeconds: number;
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

function byteCount(min: number) {
  return z
    .string()
    .trim()
    .regex(/^[0-9]+\s*(b|kib|mib|gib|tib)?$/i)
    .transform((text) => {
      const [, digits = "", unit = "b"] = /^([0-9]+)\s*([a-z]*)$/i.exec(text) ?? [];
      return Number(digits) * (BYTE_UNITS[unit.toLowerCase()] ?? 1);
    })
    .pipe(z.number().int().min(min).max(Number.MAX_SAFE_INTEGER));
}

const byteSize = byteCount(1);
const BYTE_SIZE_FORM = "whole number of bytes, optionally with a unit B, KiB, MiB, GiB or TiB";

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

/** Tenant names: lowercase letters, digits, dots, underscores and hyphens, starting alphanumeric. */
export const TENANT_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Shortest accepted API key, so keys cannot be guessed by enumeration. */
export const MIN_API_KEY_LENGTH = 16;

const apiKeyPair = z.object({
  tenant: z.string().regex(TENANT_NAME),
  key: z.string().min(MIN_API_KEY_LENGTH),
});

/** Reads `variable` or the file named by `<variable>_FILE`; setting both is an issue. */
function readKeyText(env: NodeJS.ProcessEnv, variable: string, issues: ConfigIssue[]): string {
  const fileVariable = `${variable}_FILE`;
  const inline = env[variable]?.trim() ?? "";
  const path = env[fileVariable]?.trim() ?? "";
  if (inline !== "" && path !== "") {
    issues.push({
      variable: fileVariable,
      value: JSON.stringify(path),
      expected: `either ${variable} or ${fileVariable}, not both: unset one of them`,
    });
    return "";
  }
  if (path === "") return inline;
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    issues.push({
      variable: fileVariable,
      value: JSON.stringify(path),
      expected: `a readable file of tenant=key pairs (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    });
    return "";
  }
}

/**
 * Parses comma- or newline-separated `tenant=key` pairs into hashed entries. Issues name the
 * entry by position and tenant, never by key. Lines starting with `#` are comments.
 */
function parseKeyPairs(
  text: string,
  variable: string,
  admin: boolean,
  issues: ConfigIssue[],
): ApiKeyEntry[] {
  const entries: ApiKeyEntry[] = [];
  const pairs = text
    .split(/[,\n]/)
    .map((pair) => pair.trim())
    .filter((pair) => pair !== "" && !pair.startsWith("#"));
  pairs.forEach((pair, index) => {
    const separator = pair.indexOf("=");
    const parsed = apiKeyPair.safeParse({
      tenant: separator < 0 ? "" : pair.slice(0, separator).trim(),
      key: separator < 0 ? "" : pair.slice(separator + 1).trim(),
    });
    if (!parsed.success) {
      const field = parsed.error.issues[0]?.path[0] === "tenant" ? "tenant name" : "key";
      issues.push({
        variable,
        value: `<entry ${index + 1}, redacted>`,
        expected: `tenant=key pairs with a tenant name matching ${TENANT_NAME.source} and a key of at least ${MIN_API_KEY_LENGTH} characters; this entry has an invalid ${field}`,
      });
      return;
    }
    entries.push({ tenant: parsed.data.tenant, admin, sha256: hashApiKey(parsed.data.key) });
  });
  return entries;
}

/** Reads the tenant and admin keys and rejects a key configured twice. */
function readApiKeys(env: NodeJS.ProcessEnv, issues: ConfigIssue[]): ApiKeyEntry[] {
  const entries = [
    ...parseKeyPairs(readKeyText(env, "PIFA_API_KEYS", issues), "PIFA_API_KEYS", false, issues),
    ...parseKeyPairs(readKeyText(env, "PIFA_ADMIN_KEYS", issues), "PIFA_ADMIN_KEYS", true, issues),
  ];
  const seen = new Map<string, string>();
  for (const entry of entries) {
    const digest = entry.sha256.toString("hex");
    const other = seen.get(digest);
    if (other !== undefined) {
      issues.push({
        variable: "PIFA_API_KEYS",
        value: "<redacted>",
        expected: `a distinct key per entry: tenants ${JSON.stringify(other)} and ${JSON.stringify(entry.tenant)} share one key`,
      });
    }
    seen.set(digest, entry.tenant);
  }
  return entries;
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
      `a positive ${BYTE_SIZE_FORM} (such as 68719476736 or 64GiB)`,
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
    lockDurationMs: reader.read(
      "PIFA_LOCK_DURATION_MS",
      integer(1000),
      "an integer number of milliseconds, at least 1000",
      5 * 60 * 1000,
    ),
    apiKeys: readApiKeys(env, reader.issues),
    rateLimitPerMinute: reader.read(
      "PIFA_RATE_LIMIT_PER_MINUTE",
      integer(0),
      "a non-negative integer number of requests per minute (0 for unlimited)",
      600,
    ),
    maxActiveJobsPerTenant: reader.read(
      "PIFA_MAX_ACTIVE_JOBS_PER_TENANT",
      integer(0),
      "a non-negative integer number of jobs (0 for unlimited)",
      16,
    ),
    maxStoredBytesPerTenant: reader.read(
      "PIFA_MAX_STORED_BYTES_PER_TENANT",
      byteCount(0),
      `a non-negative ${BYTE_SIZE_FORM} (0 for unlimited)`,
      1024 * GiB,
    ),
    maxUploadParts: reader.read(
      "PIFA_MAX_UPLOAD_PARTS",
      integer(1, 100_000),
      "an integer from 1 to 100000",
      256,
    ),
    uploadIdleSeconds: reader.read(
      "PIFA_UPLOAD_IDLE_SECONDS",
      integer(1, 86_400),
      "an integer number of seconds from 1 to 86400",
      60,
    ),
  };

  if (reader.issues.length > 0) {
    throw new ConfigError(reader.issues);
  }
  Object.freeze(config.storage);
  Object.freeze(config.redis);
  Object.freeze(config.apiKeys);
  return Object.freeze(config);
}
