import { createHash } from "node:crypto";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { ConfigError, displayValue, loadConfig } from "../src/config.ts";

function configErrorOf(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe("loadConfig", () => {
  it("applies defaults to an empty environment", () => {
    const config = loadConfig({});

    const dataDir = resolve("./data");
    expect(config.host).toBe("127.0.0.1");
    expect(config.port).toBe(8080);
    expect(config.dataDir).toBe(dataDir);
    expect(config.storage).toEqual({
      kind: "local",
      url: pathToFileURL(join(dataDir, "storage")).href,
      dir: join(dataDir, "storage"),
    });
    expect(config.redis).toEqual({ mode: "embedded", dataDir: join(dataDir, "redis") });
    expect(config.logLevel).toBe("info");
    expect(config.blasThreads).toBe(availableParallelism());
    expect(config.maxUploadBytes).toBe(64 * 1024 ** 3);
    expect(config.jobRetentionSeconds).toBe(604_800);
    expect(config.jobRetentionCount).toBe(1000);
    expect(config.queuePrefix).toBe("{pifa}");
    expect(config.workerConcurrency).toBe(1);
  });

  it("returns a frozen object", () => {
    const config = loadConfig({});

    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.storage)).toBe(true);
    expect(Object.isFrozen(config.redis)).toBe(true);
  });

  it("reads every variable", () => {
    const config = loadConfig({
      HOST: "0.0.0.0",
      PORT: "0",
      PIFA_DATA_DIR: "/var/lib/pifa",
      PIFA_STORAGE_URL: "s3://pifa-artifacts/prod",
      REDIS_URL: "rediss://:pw@cache.internal:6380/2",
      LOG_LEVEL: "DEBUG",
      PIFA_BLAS_THREADS: "3",
      PIFA_MAX_UPLOAD_BYTES: "10GiB",
      PIFA_JOB_RETENTION_SECONDS: "0",
      PIFA_JOB_RETENTION_COUNT: "25",
      PIFA_QUEUE_PREFIX: "{pifa-prod}",
      PIFA_WORKER_CONCURRENCY: "2",
      PIFA_API_KEYS: "team-a=team-a-key-0123456789abcdef",
      PIFA_RATE_LIMIT_PER_MINUTE: "120",
      PIFA_MAX_ACTIVE_JOBS_PER_TENANT: "4",
      PIFA_MAX_STORED_BYTES_PER_TENANT: "100GiB",
      PIFA_MAX_UPLOAD_PARTS: "64",
      PIFA_UPLOAD_IDLE_SECONDS: "30",
    });

    expect(config).toEqual({
      host: "0.0.0.0",
      port: 0,
      dataDir: "/var/lib/pifa",
      storage: { kind: "s3", url: "s3://pifa-artifacts/prod" },
      redis: { mode: "external", url: "rediss://:pw@cache.internal:6380/2" },
      logLevel: "debug",
      blasThreads: 3,
      maxUploadBytes: 10 * 1024 ** 3,
      jobRetentionSeconds: 0,
      jobRetentionCount: 25,
      queuePrefix: "{pifa-prod}",
      workerConcurrency: 2,
      lockDurationMs: 5 * 60 * 1000,
      apiKeys: [
        {
          tenant: "team-a",
          admin: false,
          sha256: createHash("sha256").update("team-a-key-0123456789abcdef").digest(),
        },
      ],
      rateLimitPerMinute: 120,
      maxActiveJobsPerTenant: 4,
      maxStoredBytesPerTenant: 100 * 1024 ** 3,
      maxUploadParts: 64,
      uploadIdleSeconds: 30,
    });
  });

  it("resolves a relative data directory", () => {
    const config = loadConfig({ PIFA_DATA_DIR: "var/pifa" });

    expect(config.dataDir).toBe(resolve("var/pifa"));
    expect(config.redis).toEqual({ mode: "embedded", dataDir: join(resolve("var/pifa"), "redis") });
  });

  it("accepts a file storage URL", () => {
    const config = loadConfig({ PIFA_STORAGE_URL: "file:///srv/pifa/objects" });

    expect(config.storage).toEqual({
      kind: "local",
      url: "file:///srv/pifa/objects",
      dir: "/srv/pifa/objects",
    });
  });

  it("parses upload sizes with units", () => {
    const sizes: [string, number][] = [
      ["12345", 12_345],
      ["512B", 512],
      ["4 KiB", 4096],
      ["3mib", 3 * 1024 ** 2],
      ["2TiB", 2 * 1024 ** 4],
    ];

    for (const [text, bytes] of sizes) {
      expect(loadConfig({ PIFA_MAX_UPLOAD_BYTES: text }).maxUploadBytes, text).toBe(bytes);
    }
  });

  it("treats blank values as unset", () => {
    const config = loadConfig({ PORT: "", PIFA_STORAGE_URL: "  ", REDIS_URL: "", LOG_LEVEL: "" });

    expect(config.port).toBe(8080);
    expect(config.storage.kind).toBe("local");
    expect(config.redis.mode).toBe("embedded");
    expect(config.logLevel).toBe("info");
  });

  it("rejects each kind of invalid value", () => {
    const cases: [variable: string, value: string, expected: string][] = [
      ["PORT", "http", "an integer from 0 to 65535"],
      ["PORT", "-1", "an integer from 0 to 65535"],
      ["PORT", "65536", "an integer from 0 to 65535"],
      ["PORT", "80.5", "an integer from 0 to 65535"],
      ["HOST", "not a host!", "an IPv4 address, an IPv6 address or a hostname"],
      ["PIFA_STORAGE_URL", "http://127.0.0.1/bucket", "s3://bucket/optional/prefix"],
      ["PIFA_STORAGE_URL", "s3://Bad_Bucket/x", "lowercase letters"],
      ["PIFA_STORAGE_URL", "file://relative/dir", "file:///absolute/directory"],
      ["REDIS_URL", "localhost:6379", "a Redis URL redis://"],
      ["REDIS_URL", "http://127.0.0.1:6379", "a Redis URL redis://"],
      ["LOG_LEVEL", "verbose", "one of fatal, error, warn, info, debug, trace, silent"],
      ["PIFA_BLAS_THREADS", "0", "a positive integer"],
      ["PIFA_BLAS_THREADS", "many", "a positive integer"],
      ["PIFA_MAX_UPLOAD_BYTES", "64GB", "optionally with a unit B, KiB, MiB, GiB or TiB"],
      ["PIFA_MAX_UPLOAD_BYTES", "0", "a positive whole number of bytes"],
      ["PIFA_MAX_UPLOAD_BYTES", "99999999TiB", "a positive whole number of bytes"],
      ["PIFA_JOB_RETENTION_SECONDS", "-5", "a non-negative integer number of seconds"],
      ["PIFA_JOB_RETENTION_COUNT", "1e3", "a non-negative integer"],
      ["PIFA_QUEUE_PREFIX", "has space", "without whitespace"],
      ["PIFA_QUEUE_PREFIX", "{}", "one non-empty Redis Cluster hash tag"],
      ["PIFA_QUEUE_PREFIX", "{a}{b}", "one non-empty Redis Cluster hash tag"],
      ["PIFA_WORKER_CONCURRENCY", "0", "a positive integer"],
    ];

    for (const [variable, value, expected] of cases) {
      const error = configErrorOf({ [variable]: value });
      expect(error.issues, `${variable}=${value}`).toHaveLength(1);
      expect(error.issues[0]?.variable).toBe(variable);
      expect(error.issues[0]?.value).toBe(JSON.stringify(value));
      expect(error.message).toContain(`${variable}=${JSON.stringify(value)}`);
      expect(error.message).toContain(expected);
    }
  });

  it("lists every invalid variable at once", () => {
    const error = configErrorOf({ PORT: "x", LOG_LEVEL: "loud", PIFA_WORKER_CONCURRENCY: "-2" });

    expect(error.issues.map((issue) => issue.variable)).toEqual([
      "PORT",
      "LOG_LEVEL",
      "PIFA_WORKER_CONCURRENCY",
    ]);
    expect(error.message.split("\n")).toHaveLength(4);
  });

  it("never prints a Redis password", () => {
    const error = configErrorOf({ REDIS_URL: "redis://user:hunter2@/0" });

    expect(error.message).not.toContain("hunter2");
    expect(error.issues[0]?.value).toBe(JSON.stringify("redis://user:<redacted>@/0"));
  });
});

describe("displayValue", () => {
  it("redacts secret variables", () => {
    for (const variable of [
      "AWS_SECRET_ACCESS_KEY",
      "PIFA_API_TOKEN",
      "REDIS_PASSWORD",
      "SIGNING_KEY",
    ]) {
      expect(displayValue(variable, "s3cr3t"), variable).toBe("<redacted>");
    }
    expect(displayValue("PORT", "80a")).toBe('"80a"');
  });
});
