/**
 * The API key checker, the key configuration and the startup warning without keys. The checker
 * test counts calls to `crypto.timingSafeEqual` through a pass-through spy on node:crypto.
 */

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";

vi.mock("node:crypto", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:crypto")>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

const { timingSafeEqual } = await import("node:crypto");
const { ApiKeyChecker, hashApiKey, isLoopbackHost, warnIfOpenOnNetwork } = await import(
  "../../src/api/auth.ts"
);
const { ConfigError, loadConfig } = await import("../../src/config.ts");

const KEY_A = "team-a-key-0123456789abcdef";
const KEY_B = "team-b-key-0123456789abcdef";
const KEY_ADMIN = "ops-admin-key-0123456789abcdef";

const entries = [
  { tenant: "team-a", admin: false, sha256: hashApiKey(KEY_A) },
  { tenant: "team-b", admin: false, sha256: hashApiKey(KEY_B) },
  { tenant: "ops", admin: true, sha256: hashApiKey(KEY_ADMIN) },
];

describe("ApiKeyChecker", () => {
  const checker = new ApiKeyChecker(entries);

  test("returns the tenant of a valid key", () => {
    expect(checker.authenticate(KEY_B)).toEqual({ tenant: "team-b", admin: false });
    expect(checker.authenticate(KEY_ADMIN)).toEqual({ tenant: "ops", admin: true });
  });

  test("rejects unknown keys and prefixes", () => {
    expect(checker.authenticate("")).toBeUndefined();
    expect(checker.authenticate(KEY_A.slice(0, -1))).toBeUndefined();
    expect(checker.authenticate(`${KEY_A} `)).toBeUndefined();
  });

  test("compares every digest with timingSafeEqual", () => {
    const spy = vi.mocked(timingSafeEqual);
    for (const key of [KEY_A, KEY_ADMIN, "unknown-key-0123456789"]) {
      spy.mockClear();
      checker.authenticate(key);
      // One comparison per configured key, also when the first one matched.
      expect(spy, key).toHaveBeenCalledTimes(entries.length);
    }
  });

  test("is disabled without keys", () => {
    expect(new ApiKeyChecker([]).enabled).toBe(false);
    expect(checker.enabled).toBe(true);
  });
});

describe("key configuration", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pifa-keys-"));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function configError(env: NodeJS.ProcessEnv): InstanceType<typeof ConfigError> {
    try {
      loadConfig(env);
    } catch (error) {
      if (error instanceof ConfigError) return error;
      throw error;
    }
    throw new Error("loadConfig accepted the environment");
  }

  test("parses tenant and admin keys as digests", () => {
    const config = loadConfig({
      PIFA_API_KEYS: `team-a=${KEY_A}, team-b=${KEY_B}`,
      PIFA_ADMIN_KEYS: `ops=${KEY_ADMIN}`,
    });
    expect(config.apiKeys.map((entry) => [entry.tenant, entry.admin])).toEqual([
      ["team-a", false],
      ["team-b", false],
      ["ops", true],
    ]);
    expect(config.apiKeys[0].sha256.equals(hashApiKey(KEY_A))).toBe(true);
    expect(JSON.stringify(config)).not.toContain(KEY_A);
  });

  test("reads keys from a file, one pair a line", async () => {
    const path = join(dir, "keys.txt");
    await writeFile(path, `# tenants\nteam-a=${KEY_A}\n\nteam-b=${KEY_B}\n`);
    const config = loadConfig({ PIFA_API_KEYS_FILE: path });
    expect(config.apiKeys.map((entry) => entry.tenant)).toEqual(["team-a", "team-b"]);
  });

  test("rejects a variable set together with its file", () => {
    const error = configError({
      PIFA_API_KEYS: `team-a=${KEY_A}`,
      PIFA_API_KEYS_FILE: join(dir, "keys.txt"),
    });
    expect(error.issues.map((issue) => issue.variable)).toEqual(["PIFA_API_KEYS_FILE"]);
  });

  test("rejects a missing key file", () => {
    const error = configError({ PIFA_ADMIN_KEYS_FILE: join(dir, "absent.txt") });
    expect(error.issues[0].variable).toBe("PIFA_ADMIN_KEYS_FILE");
    expect(error.issues[0].expected).toContain("ENOENT");
  });

  const invalid: Array<[string, string]> = [
    ["short key", "team-a=short-key"],
    ["uppercase tenant", `Team-A=${KEY_A}`],
    ["missing separator", KEY_A],
    ["empty tenant", `=${KEY_A}`],
  ];

  test.each(invalid)("rejects %s without printing the key", (_case, value) => {
    const error = configError({ PIFA_API_KEYS: value });
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0].variable).toBe("PIFA_API_KEYS");
    expect(error.message).not.toContain(KEY_A);
    expect(error.message).not.toContain("short-key");
  });

  test("rejects one key for two tenants", () => {
    const error = configError({
      PIFA_API_KEYS: `team-a=${KEY_A}`,
      PIFA_ADMIN_KEYS: `ops=${KEY_A}`,
    });
    expect(error.issues[0].expected).toContain('"team-a" and "ops"');
    expect(error.message).not.toContain(KEY_A);
  });

  test("limits take defaults and accept 0 for unlimited", () => {
    const defaults = loadConfig({});
    expect(defaults.apiKeys).toEqual([]);
    expect(defaults.maxUploadParts).toBe(256);
    expect(defaults.uploadIdleSeconds).toBe(60);
    const unlimited = loadConfig({
      PIFA_RATE_LIMIT_PER_MINUTE: "0",
      PIFA_MAX_ACTIVE_JOBS_PER_TENANT: "0",
      PIFA_MAX_STORED_BYTES_PER_TENANT: "0",
    });
    expect(unlimited.rateLimitPerMinute).toBe(0);
    expect(unlimited.maxActiveJobsPerTenant).toBe(0);
    expect(unlimited.maxStoredBytesPerTenant).toBe(0);
    expect(loadConfig({ PIFA_MAX_STORED_BYTES_PER_TENANT: "2GiB" }).maxStoredBytesPerTenant).toBe(
      2 * 1024 ** 3,
    );
  });
});

describe("startup warning", () => {
  function capture() {
    const lines: Array<Record<string, unknown>> = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(JSON.parse(chunk.toString("utf8")));
        callback();
      },
    });
    return { lines, logger: pino({ level: "info" }, stream) };
  }

  test("warns on a non-loopback host without keys", () => {
    const { lines, logger } = capture();
    warnIfOpenOnNetwork("0.0.0.0", new ApiKeyChecker([]), logger);
    expect(lines).toHaveLength(1);
    expect(lines[0].level).toBe(40);
    expect(lines[0].host).toBe("0.0.0.0");
    expect(String(lines[0].msg)).toContain("PIFA_API_KEYS");
  });

  test("stays quiet on loopback or with keys", () => {
    const { lines, logger } = capture();
    warnIfOpenOnNetwork("127.0.0.1", new ApiKeyChecker([]), logger);
    warnIfOpenOnNetwork("::1", new ApiKeyChecker([]), logger);
    warnIfOpenOnNetwork("0.0.0.0", new ApiKeyChecker(entries), logger);
    expect(lines).toEqual([]);
  });

  test("classifies loopback hosts", () => {
    expect(isLoopbackHost("127.0.0.1")).toBe(true);
    expect(isLoopbackHost("127.8.0.1")).toBe(true);
    expect(isLoopbackHost("[::1]")).toBe(true);
    expect(isLoopbackHost("localhost")).toBe(true);
    expect(isLoopbackHost("0.0.0.0")).toBe(false);
    expect(isLoopbackHost("::")).toBe(false);
    expect(isLoopbackHost("10.0.0.5")).toBe(false);
    expect(isLoopbackHost("example.internal")).toBe(false);
  });
});
