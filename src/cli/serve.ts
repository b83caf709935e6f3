/** `pifa serve`, `pifa api` and `pifa worker`: the long-running service commands. */

import type { Command } from "commander";
import { pino } from "pino";
import { ConfigError, loadConfig } from "../config.ts";
import { LOG_REDACT_PATHS, type ServiceRoles, startService } from "./service.ts";

const ENVIRONMENT_HELP = `
Configuration comes from environment variables: HOST, PORT, REDIS_URL, PIFA_DATA_DIR,
PIFA_STORAGE_URL, PIFA_MAX_UPLOAD_BYTES, PIFA_JOB_RETENTION_SECONDS, PIFA_JOB_RETENTION_COUNT,
PIFA_QUEUE_PREFIX, PIFA_WORKER_CONCURRENCY, PIFA_BLAS_THREADS, LOG_LEVEL, PIFA_API_KEYS,
PIFA_ADMIN_KEYS (or their _FILE variants), PIFA_RATE_LIMIT_PER_MINUTE,
PIFA_MAX_ACTIVE_JOBS_PER_TENANT, PIFA_MAX_STORED_BYTES_PER_TENANT, PIFA_MAX_UPLOAD_PARTS and
PIFA_UPLOAD_IDLE_SECONDS; workers also read PIFA_LAYERS_PER_CHILD, PIFA_MAX_DATA_AWARE_JOBS,
PIFA_WORKER_METRICS_PORT and PIFA_WORKER_METRICS_HOST. See docs/deploy.md.`;

/** Runs the roles until SIGINT or SIGTERM, then shuts down and exits with status 0. */
async function run(roles: ServiceRoles): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const logger = pino({
    level: config.logLevel,
    base: { service: "pifa" },
    redact: { paths: LOG_REDACT_PATHS, censor: "[redacted]" },
  });

  let service: Awaited<ReturnType<typeof startService>>;
  try {
    service = await startService(config, roles, logger);
  } catch (error) {
    logger.fatal({ err: error }, "Service failed to start");
    // Let the final log line flush before the exit.
    await new Promise((resolve) => setTimeout(resolve, 50));
    process.exit(1);
  }
  logger.info(
    { url: service.url, roles, storage: config.storage.kind, redis: config.redis.mode },
    "Service started",
  );

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "Second signal during shutdown; exiting at once");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "Shutting down: finishing requests and handing running jobs back");
    service.stop().then(
      () => {
        logger.info("Service stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "Shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

/** Adds `serve`, `api` and `worker` to the `pifa` program. */
export function registerServiceCommands(program: Command): void {
  program
    .command("serve")
    .description(
      "Run the HTTP API and a worker in one process, with an embedded Redis unless REDIS_URL is set",
    )
    .addHelpText("after", ENVIRONMENT_HELP)
    .action(() => run({ api: true, worker: true }));

  program
    .command("api")
    .description("Run only the HTTP API; needs REDIS_URL and the same storage as the workers")
    .addHelpText("after", ENVIRONMENT_HELP)
    .action(() => run({ api: true, worker: false }));

  program
    .command("worker")
    .description("Run only a compression worker; needs REDIS_URL and the same storage as the API")
    .addHelpText("after", ENVIRONMENT_HELP)
    .action(() => run({ api: false, worker: true }));
}
