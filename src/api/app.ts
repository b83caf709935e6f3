/**
 * The Fastify application of the HTTP API. It keeps no job state in memory, because every job
 * lives in Redis and storage. So any number of API processes can serve the same jobs, and a
 * restarted one continues where the last one stopped.
 */

import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import multipart from "@fastify/multipart";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { EventHub } from "../jobs/events.ts";
import type { JobKeys } from "../jobs/keys.ts";
import type { JobQueue } from "../jobs/queue.ts";
import type { JobStore } from "../jobs/store.ts";
import type { Storage } from "../storage/types.ts";
import {
  ApiKeyChecker,
  type ApiKeyEntry,
  registerAuthentication,
  warnIfOpenOnNetwork,
} from "./auth.ts";
import type { ApiContext, ApiLimits } from "./context.ts";
import { registerErrorHandlers } from "./error-handler.ts";
import { registerRateLimit, TenantLimiter, type TenantLimits, UNLIMITED } from "./limits.ts";
import { createMetricsRegistry, instrumentRequests } from "./metrics.ts";
import { registerArtifactRoutes } from "./routes/artifacts.ts";
import { registerCreateJobRoute } from "./routes/create-job.ts";
import { registerDocsRoutes } from "./routes/docs.ts";
import { registerEventRoutes } from "./routes/events.ts";
import { registerHealthRoutes } from "./routes/health.ts";
import { registerJobRoutes } from "./routes/jobs.ts";
import {
  closeWhenIdle,
  DEFAULT_MAX_UPLOAD_PARTS,
  DEFAULT_UPLOAD_IDLE_SECONDS,
  MAX_OPTIONS_BYTES,
} from "./upload.ts";

export interface ApiAppOptions {
  redis: Redis;
  keys: JobKeys;
  store: JobStore;
  queue: JobQueue;
  storage: Storage;
  limits: ApiLimits;
  /** Configured API keys; none means the single-user mode without authentication. */
  apiKeys?: readonly ApiKeyEntry[];
  /** Per-tenant limits; default unlimited. */
  tenantLimits?: TenantLimits;
  logger: Logger;
  /** Time in-flight requests get to finish once the app closes, in milliseconds; default 30 s. */
  shutdownGraceMs?: number;
}

/** Default time in-flight requests get to finish once the app closes, in milliseconds. */
const DEFAULT_SHUTDOWN_GRACE_MS = 30_000;

/** How often connections are checked for idleness while the app closes, in milliseconds. */
const IDLE_CHECK_INTERVAL_MS = 100;

/**
 * Closes each keep-alive connection as soon as its in-flight request has finished, and every
 * connection once `graceMs` has passed. Fastify closes idle connections only once, when close
 * starts, so a connection busy at that moment would otherwise stay open until its client drops it.
 */
function closeConnectionsWhenIdle(app: FastifyInstance, graceMs: number): void {
  const server = app.server;
  const idleCheck = setInterval(() => server.closeIdleConnections(), IDLE_CHECK_INTERVAL_MS);
  const deadline = setTimeout(() => {
    app.log.warn(
      { graceMs },
      "Requests still running after the shutdown grace period; closing their connections",
    );
    server.closeAllConnections();
  }, graceMs);
  idleCheck.unref();
  deadline.unref();
  server.once("close", () => {
    clearInterval(idleCheck);
    clearTimeout(deadline);
  });
}

/** Largest JSON request body; a `source` submission is well under 100 KB. */
const JSON_BODY_LIMIT = 1024 * 1024;

/** Client request ids are echoed only when short and plain, so they cannot forge log lines. */
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

function requestIdOf(request: IncomingMessage): string {
  const header = request.headers["x-request-id"];
  return typeof header === "string" && CLIENT_REQUEST_ID.test(header) ? header : randomUUID();
}

/** True when the request announces a body, by Content-Length or Transfer-Encoding. */
function hasBody(request: IncomingMessage): boolean {
  const length = request.headers["content-length"];
  return (
    (length !== undefined && length !== "0") || request.headers["transfer-encoding"] !== undefined
  );
}

/**
 * Closes the connection of a request whose body sends no bytes for `idleMs` while Fastify parses
 * it. The watch ends before the handler runs, so a slow handler is not cut off. Multipart uploads,
 * which the handler reads itself, start their own watch in the create-job route.
 */
function closeStalledBodies(app: FastifyInstance, idleMs: number): void {
  const watches = new WeakMap<object, () => void>();
  const stop = async (request: { raw: IncomingMessage }) => {
    watches.get(request.raw)?.();
    watches.delete(request.raw);
  };
  app.addHook("onRequest", async (request) => {
    if (hasBody(request.raw)) watches.set(request.raw, closeWhenIdle(request, idleMs));
  });
  app.addHook("preHandler", stop);
  app.addHook("onResponse", stop);
}

/** Builds the API app with all routes registered; the caller listens and closes it. */
export async function buildApiApp(options: ApiAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    // pino 10 loggers implement FastifyBaseLogger; the cast only widens the generic parameter.
    loggerInstance: options.logger as FastifyBaseLogger,
    genReqId: requestIdOf,
    bodyLimit: JSON_BODY_LIMIT,
    // Uploads of many gigabytes may take hours, so requests get no total time limit. A stalled
    // upload is closed by the per-upload idle timeout instead (see upload.ts), and idle
    // keep-alive connections by Node's keepAliveTimeout (Fastify default 72 s).
    requestTimeout: 0,
    connectionTimeout: 0,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  const events = await EventHub.open(options.redis, options.keys, options.logger);
  const checker = new ApiKeyChecker(options.apiKeys ?? []);
  const tenantLimiter = new TenantLimiter(
    options.redis,
    options.keys,
    options.store,
    options.tenantLimits ?? UNLIMITED,
  );
  const context: ApiContext = { ...options, events, tenantLimiter, openStreams: new Set() };
  // Event streams end here, so their connections are idle by the time Fastify closes idle
  // connections; otherwise close would wait for each client's keep-alive timeout.
  app.addHook("preClose", async () => {
    await events.close();
    await Promise.allSettled([...context.openStreams]);
    closeConnectionsWhenIdle(app, options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS);
  });

  await app.register(multipart, {
    limits: {
      // The storage layer enforces the upload budget across all parts; this only stops a single
      // part well past it in the parser.
      fileSize: options.limits.maxUploadBytes + 1,
      files: options.limits.maxUploadParts ?? DEFAULT_MAX_UPLOAD_PARTS,
      parts: options.limits.maxUploadParts ?? DEFAULT_MAX_UPLOAD_PARTS,
      fieldSize: MAX_OPTIONS_BYTES + 1,
    },
  });

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });
  registerErrorHandlers(app);
  closeStalledBodies(app, (options.limits.uploadIdleSeconds ?? DEFAULT_UPLOAD_IDLE_SECONDS) * 1000);
  registerAuthentication(app, checker);
  registerRateLimit(app, tenantLimiter);
  app.addHook("onListen", async () => {
    const address = app.server.address();
    if (address !== null && typeof address === "object") {
      warnIfOpenOnNetwork(address.address, checker, options.logger);
    }
  });
  const registry = createMetricsRegistry(options.store);
  instrumentRequests(app, registry);

  registerCreateJobRoute(app, context);
  registerJobRoutes(app, context);
  registerEventRoutes(app, context);
  registerArtifactRoutes(app, context);
  registerHealthRoutes(app, context, registry);
  await registerDocsRoutes(app);
  return app;
}
