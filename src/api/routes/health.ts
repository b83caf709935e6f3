/** Liveness, readiness and Prometheus metrics. */

import type { FastifyInstance } from "fastify";
import type { Registry } from "prom-client";
import type { ApiContext } from "../context.ts";

/** Maximum wait for one readiness check, in milliseconds, so a hung backend fails the probe. */
const CHECK_TIMEOUT_MS = 2000;

async function check(name: string, probe: () => Promise<unknown>): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${name} did not respond within ${CHECK_TIMEOUT_MS} ms`)),
      CHECK_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([probe(), timeout]);
    return "ok";
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    clearTimeout(timer);
  }
}

export function registerHealthRoutes(
  app: FastifyInstance,
  context: ApiContext,
  registry: Registry,
): void {
  app.get("/livez", async () => ({ status: "ok" }));

  app.get("/readyz", async (request, reply) => {
    const [redis, storage] = await Promise.all([
      check("Redis", () => context.redis.ping()),
      check("Storage", () => context.storage.ping()),
    ]);
    const ready = redis === "ok" && storage === "ok";
    if (!ready) request.log.warn({ redis, storage }, "Readiness check failed");
    reply.code(ready ? 200 : 503);
    return { status: ready ? "ready" : "unavailable", checks: { redis, storage } };
  });

  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", registry.contentType);
    return registry.metrics();
  });
}
