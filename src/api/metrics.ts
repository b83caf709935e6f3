/**
 * Prometheus metrics of the API process: HTTP requests by route, method and status with their
 * durations, bytes uploaded and artifact bytes served, jobs by status read from the job store at
 * scrape time, and prom-client's process metrics. Each worker serves its own metrics
 * (workers/metrics.ts). Each app gets its own registry, so several apps in one process do not
 * collide.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { JOB_STATUSES } from "../jobs/model.ts";
import type { JobStore } from "../jobs/store.ts";

/** Histogram buckets in seconds, from a health probe to a multi-gigabyte upload. */
const DURATION_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800,
];

export function createMetricsRegistry(store: JobStore): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: "pifa_jobs",
    help: "Jobs in the job store by status.",
    labelNames: ["status"],
    registers: [registry],
    async collect() {
      const counts = await store.countByStatus();
      for (const status of JOB_STATUSES) this.set({ status }, counts[status]);
    },
  });
  return registry;
}

const SUBMIT_ROUTE = "/v1/jobs";
const ARTIFACT_ROUTE = "/v1/jobs/:id/artifacts/:name";

/** Adds a finished response's bytes to the upload or served counter when its route has one. */
function countTransferredBytes(
  route: string | undefined,
  method: string,
  request: FastifyRequest,
  reply: FastifyReply,
  counters: { uploaded: Counter; served: Counter },
): void {
  const status = reply.raw.statusCode;
  if (route === SUBMIT_ROUTE && method === "POST" && (status === 200 || status === 202)) {
    // NOTE: chunked uploads carry no Content-Length and are not counted.
    const length = Number(request.headers["content-length"]);
    if (Number.isFinite(length) && length > 0) counters.uploaded.inc(length);
  } else if (route === ARTIFACT_ROUTE && method === "GET" && (status === 200 || status === 206)) {
    const length = Number(reply.raw.getHeader("content-length"));
    if (Number.isFinite(length) && length > 0) counters.served.inc(length);
  }
}

/**
 * Counts every response and observes its duration. The hook listens on the raw response, so
 * hijacked replies (server-sent events) are measured too, from request start to stream end.
 */
export function instrumentRequests(app: FastifyInstance, registry: Registry): void {
  const requests = new Counter({
    name: "pifa_http_requests_total",
    help: "HTTP requests by route pattern, method and status code.",
    labelNames: ["route", "method", "status"],
    registers: [registry],
  });
  const durations = new Histogram({
    name: "pifa_http_request_duration_seconds",
    help: "HTTP request durations in seconds by route pattern, method and status code.",
    labelNames: ["route", "method", "status"],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const uploaded = new Counter({
    name: "pifa_upload_bytes_total",
    help: "Request body bytes of accepted job submissions (POST /v1/jobs), from Content-Length.",
    registers: [registry],
  });
  const served = new Counter({
    name: "pifa_artifact_bytes_served_total",
    help: "Artifact bytes of completed GET responses (200 and 206), from Content-Length.",
    registers: [registry],
  });
  app.addHook("onRequest", async (request, reply) => {
    const started = process.hrtime.bigint();
    reply.raw.once("finish", () => {
      countTransferredBytes(request.routeOptions.url, request.method, request, reply, {
        uploaded,
        served,
      });
    });
    reply.raw.once("close", () => {
      const labels = {
        // Unmatched paths share one label, so scanners cannot grow the label set.
        route: request.routeOptions.url ?? "unmatched",
        method: request.method,
        status: String(reply.raw.statusCode),
      };
      requests.inc(labels);
      durations.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
    });
  });
}
