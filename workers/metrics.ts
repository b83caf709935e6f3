/**
 * Prometheus metrics of a worker process: per-layer compute durations, layers computed, durations
 * of succeeded jobs by method, and busy time. They live in the worker process, so each
 * worker serves its own `/metrics` when `PIFA_WORKER_METRICS_PORT` is set; the API's `/metrics`
 * does not include them.
 */

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

/** Buckets in seconds, from a small layer to a long data-aware job. */
const LAYER_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300];
const JOB_BUCKETS = [1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400];

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly #layerSeconds: Histogram<"method">;
  readonly #layers: Counter<"method">;
  readonly #jobSeconds: Histogram<"method">;
  readonly #busySeconds: Counter<"queue">;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.#layerSeconds = new Histogram({
      name: "pifa_worker_layer_duration_seconds",
      help: "Compute time of one compressed layer in seconds, by method.",
      labelNames: ["method"],
      buckets: LAYER_BUCKETS,
      registers,
    });
    this.#layers = new Counter({
      name: "pifa_worker_layers_processed_total",
      help: "Layers this worker compressed, by method.",
      labelNames: ["method"],
      registers,
    });
    this.#jobSeconds = new Histogram({
      name: "pifa_worker_job_duration_seconds",
      help: "Time from a job's start to its success in seconds, by method, observed by the worker that published it.",
      labelNames: ["method"],
      buckets: JOB_BUCKETS,
      registers,
    });
    this.#busySeconds = new Counter({
      name: "pifa_worker_busy_seconds_total",
      help: "Seconds this worker spent processing BullMQ jobs, by queue.",
      labelNames: ["queue"],
      registers,
    });
  }

  observeLayer(method: string, seconds: number): void {
    this.#layerSeconds.observe({ method }, seconds);
    this.#layers.inc({ method });
  }

  observeJob(method: string, seconds: number): void {
    this.#jobSeconds.observe({ method }, seconds);
  }

  addBusyTime(queue: string, seconds: number): void {
    this.#busySeconds.inc({ queue }, seconds);
  }

  /** Runs `work` and adds its wall time to the busy counter of `queue`, whether it throws or not. */
  async timeBusy<T>(queue: string, work: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    try {
      return await work();
    } finally {
      this.addBusyTime(queue, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }
}

export interface MetricsListener {
  /** `http://host:port` the listener is bound to. */
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` of `registry` on `host:port`, loopback by default because the metrics
 * need no authentication; any other path gets 404.
 */
export async function listenForMetrics(
  registry: Registry,
  port: number,
  host: string,
  logger: Logger,
): Promise<MetricsListener> {
  const server: Server = createServer((request, response) => {
    if (request.method !== "GET" || request.url !== "/metrics") {
      response
        .writeHead(404, { "content-type": "text/plain" })
        .end("not found: use GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => {
        response.writeHead(200, { "content-type": registry.contentType }).end(text);
      },
      (error: unknown) => {
        logger.error({ err: error }, "Failed to collect worker metrics");
        response
          .writeHead(500, { "content-type": "text/plain" })
          .end("metrics collection failed\n");
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`;
  logger.info({ url }, "Worker metrics listening");
  return {
    url,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

export interface WorkerMetricsSettings {
  /** Port of the worker's `/metrics` listener (`PIFA_WORKER_METRICS_PORT`); undefined turns it off. */
  port?: number;
  /** Address it binds to (`PIFA_WORKER_METRICS_HOST`), loopback by default. */
  host: string;
}

/** Reads the worker metrics settings; throws naming the variable when the port is invalid. */
export function loadWorkerMetricsSettings(
  env: NodeJS.ProcessEnv = process.env,
): WorkerMetricsSettings {
  const host = env.PIFA_WORKER_METRICS_HOST?.trim() || "127.0.0.1";
  const raw = env.PIFA_WORKER_METRICS_PORT;
  if (raw === undefined || raw.trim() === "") return { host };
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(
      `PIFA_WORKER_METRICS_PORT is invalid: ${JSON.stringify(raw)} is not a port from 0 to 65535. Set a port, or unset it to serve no worker metrics.`,
    );
  }
  return { port, host };
}
