import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  checkEvictionPolicy,
  connectRedis,
  EmbeddedRedisError,
  EvictionPolicyError,
  readEvictionPolicy,
  redactRedisUrl,
  startEmbeddedRedis,
} from "../src/redis/index.ts";
import { startRedis, type TestRedis } from "./helpers/redis.ts";

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls until `pid` is gone; gives up after 10 s so that a surviving process fails the test instead of hanging it. */
async function waitUntilGone(pid: number): Promise<boolean> {
  for (let waited = 0; waited < 10_000; waited += 50) {
    if (!isProcessAlive(pid)) {
      return true;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return !isProcessAlive(pid);
}

describe("embedded redis", () => {
  let base = "";
  const clients: Redis[] = [];
  const connect = (url: string, options?: Parameters<typeof connectRedis>[1]) => {
    const client = connectRedis(url, options);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), "pifa-redis-test-"));
  });
  afterEach(() => {
    for (const client of clients.splice(0)) {
      client.disconnect();
    }
  });
  afterAll(() => rm(base, { recursive: true, force: true }));

  it("starts, persists to AOF and stops", async () => {
    const dataDir = join(base, "aof");
    const redis = await startEmbeddedRedis({ dataDir });

    const client = connect(redis.url);
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(await client.ping()).toBe("PONG");
    expect(await client.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
    expect(await client.config("GET", "bind")).toEqual(["bind", "127.0.0.1"]);
    expect(await client.set("job:1", "queued")).toBe("OK");
    expect((await readdir(dataDir)).some((name) => name.startsWith("appendonly"))).toBe(true);

    client.disconnect();
    await redis.stop();
    await redis.stop();
    expect(isProcessAlive(redis.pid)).toBe(false);
    expect((await redis.exited).code).toBe(0);

    const restarted = await startEmbeddedRedis({ dataDir });
    const again = connect(restarted.url);
    expect(await again.get("job:1")).toBe("queued");
    again.disconnect();
    await restarted.stop();
    expect(isProcessAlive(restarted.pid)).toBe(false);
  });

  it("binds the requested port", async () => {
    const helper = await startRedis();
    const port = helper.port;
    await helper.stop();

    const redis = await startEmbeddedRedis({ dataDir: join(base, "fixed"), port });

    expect(redis.port).toBe(port);
    expect(await connect(redis.url).ping()).toBe("PONG");
    await redis.stop();
  });

  it("reports a port that is in use", async () => {
    // A silent listener: it reads requests and never replies, so the launcher must notice that
    // its own child exited rather than wait for a PONG from whatever listens on the port.
    const blocker: Server = createServer((socket) => socket.resume());
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const address = blocker.address();
    const port = typeof address === "object" && address ? address.port : 0;

    const error = await startEmbeddedRedis({ dataDir: join(base, "busy"), port }).catch(
      (reason: unknown) => reason,
    );

    expect(error).toBeInstanceOf(EmbeddedRedisError);
    expect((error as EmbeddedRedisError).reason).toBe("PORT_IN_USE");
    expect((error as Error).message).toContain(String(port));
    await new Promise((resolve) => blocker.close(resolve));
  });

  it("refuses a data directory in use", async () => {
    const dataDir = join(base, "shared");
    const first = await startEmbeddedRedis({ dataDir });

    const error = await startEmbeddedRedis({ dataDir }).catch((reason: unknown) => reason);

    expect(error).toBeInstanceOf(EmbeddedRedisError);
    expect((error as EmbeddedRedisError).reason).toBe("DATA_DIR_IN_USE");
    expect((error as Error).message).toContain(dataDir);
    expect((error as Error).message).toContain(String(first.pid));
    const client = connect(first.url);
    expect(await client.ping()).toBe("PONG");
    client.disconnect();

    await first.stop();
    const next = await startEmbeddedRedis({ dataDir });
    const nextClient = connect(next.url);
    expect(await nextClient.ping()).toBe("PONG");
    nextClient.disconnect();
    await next.stop();
  });

  it("replaces a lock whose processes are gone", async () => {
    const dataDir = join(base, "stale");
    await mkdir(dataDir, { recursive: true });
    const exitedPid = spawnSync(process.execPath, ["-e", ""]).pid;
    await writeFile(
      join(dataDir, "pifa-redis.lock"),
      JSON.stringify({ ownerPid: exitedPid, redisPid: exitedPid }),
    );

    const redis = await startEmbeddedRedis({ dataDir });

    const client = connect(redis.url);
    expect(await client.ping()).toBe("PONG");
    client.disconnect();
    await redis.stop();
  });

  it("stops the child when the parent exits", async () => {
    const script = join(base, "parent.mts");
    const launcher = new URL("../src/redis/embedded.ts", import.meta.url).href;
    await writeFile(
      script,
      [
        `import { startEmbeddedRedis } from ${JSON.stringify(launcher)};`,
        `const redis = await startEmbeddedRedis({ dataDir: ${JSON.stringify(join(base, "orphan"))} });`,
        "console.log(JSON.stringify({ pid: redis.pid }));",
        "process.exit(0);",
      ].join("\n"),
    );

    const parent = spawnSync(process.execPath, ["--import", "tsx", script], {
      encoding: "utf8",
      timeout: 30_000,
    });

    expect(parent.status, parent.stderr).toBe(0);
    const { pid } = JSON.parse(parent.stdout.trim().split("\n").at(-1) ?? "{}") as { pid: number };
    expect(pid).toBeGreaterThan(0);
    expect(await waitUntilGone(pid)).toBe(true);
  });

  it("names the Debian package when redis-server is missing", async () => {
    const emptyPath = await mkdtemp(join(base, "empty-path-"));

    const error = await startEmbeddedRedis({
      dataDir: join(base, "missing"),
      env: { PATH: emptyPath },
    }).catch((reason: unknown) => reason);

    expect(error).toBeInstanceOf(EmbeddedRedisError);
    expect((error as EmbeddedRedisError).reason).toBe("NOT_INSTALLED");
    expect((error as Error).message).toContain("redis-server");
    expect((error as Error).message).toContain("apt-get install redis-server");
  });
});

describe("eviction policy check", () => {
  let redis: TestRedis;
  let lru: TestRedis;
  const clients: Redis[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    lru = await startRedis();
  });
  afterAll(async () => {
    for (const client of clients) {
      client.disconnect();
    }
    await redis.stop();
    await lru.stop();
  });

  it("passes on the embedded server", async () => {
    const client = connectRedis(redis.url);
    clients.push(client);

    expect(await checkEvictionPolicy(client)).toBe("noeviction");
  });

  it("fails with a clear message under allkeys-lru", async () => {
    const client = connectRedis(lru.url);
    clients.push(client);
    await client.config("SET", "maxmemory-policy", "allkeys-lru");

    const error = await checkEvictionPolicy(client).catch((reason: unknown) => reason);

    expect(error).toBeInstanceOf(EvictionPolicyError);
    expect((error as EvictionPolicyError).policy).toBe("allkeys-lru");
    const message = (error as Error).message;
    expect(message).toContain(`127.0.0.1:${lru.port}`);
    expect(message).toContain('"allkeys-lru"');
    expect(message).toContain("BullMQ");
    expect(message).toContain("CONFIG SET maxmemory-policy noeviction");
  });

  it("falls back to INFO when CONFIG is denied", async () => {
    const admin = connectRedis(redis.url);
    clients.push(admin);
    await admin.call(
      "ACL",
      "SETUSER",
      "no-config",
      "on",
      ">secret-password",
      "~*",
      "&*",
      "+@all",
      "-config",
    );
    const limited = connectRedis(`redis://no-config:secret-password@127.0.0.1:${redis.port}`);
    clients.push(limited);

    await expect(limited.config("GET", "maxmemory-policy")).rejects.toThrow(/NOPERM/);
    expect(await readEvictionPolicy(limited)).toBe("noeviction");
    expect(await checkEvictionPolicy(limited)).toBe("noeviction");
  });
});

describe("connectRedis", () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(() => redis.stop());

  it("sets worker connection options", async () => {
    const worker = connectRedis(redis.url, { forWorker: true, connectionName: "pifa-worker" });
    const api = connectRedis(redis.url);

    expect(worker.options.maxRetriesPerRequest).toBeNull();
    expect(api.options.maxRetriesPerRequest).toBe(20);
    expect(await worker.client("GETNAME")).toBe("pifa-worker");
    worker.disconnect();
    api.disconnect();
  });

  it("rejects a URL that is not redis", () => {
    expect(() => connectRedis("http://user:hunter2@127.0.0.1:6379")).toThrow(/expected redis:\/\//);
    expect(() => connectRedis("http://user:hunter2@127.0.0.1:6379")).not.toThrow(/hunter2/);
  });

  it("redacts passwords in URLs", () => {
    expect(redactRedisUrl("redis://user:hunter2@10.0.0.1:6379/0")).toBe(
      "redis://user:<redacted>@10.0.0.1:6379/0",
    );
    expect(redactRedisUrl("rediss://:hunter2@cache:6380")).toBe("rediss://:<redacted>@cache:6380");
    expect(redactRedisUrl("redis://127.0.0.1:6379")).toBe("redis://127.0.0.1:6379");
  });
});
