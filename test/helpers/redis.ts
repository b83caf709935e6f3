import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEmbeddedRedis } from "../../src/redis/embedded.ts";

/** Private Redis for one test file: `redis-server` on a free port of 127.0.0.1 with its own data directory. */
export interface TestRedis {
  /** `redis://127.0.0.1:<port>` */
  url: string;
  port: number;
  dataDir: string;
  /** Stops the server and deletes its data directory. */
  stop(): Promise<void>;
}

/**
 * Starts a Redis for tests through the same launcher the service uses, so tests need only the
 * `redis-server` executable (Debian package redis-server), not a running Redis service.
 */
export async function startRedis(): Promise<TestRedis> {
  const dataDir = await mkdtemp(join(tmpdir(), "pifa-redis-"));
  try {
    const redis = await startEmbeddedRedis({ dataDir });
    return {
      url: redis.url,
      port: redis.port,
      dataDir,
      async stop() {
        await redis.stop();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
}
