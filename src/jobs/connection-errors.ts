import type { EventEmitter } from "node:events";
import type { Logger } from "pino";

/** Minimum milliseconds between two logged errors of one connection; repeats in between are counted. */
const ERROR_LOG_INTERVAL_MS = 30_000;

/**
 * Logs the `error` events of a Redis connection, a BullMQ queue or a worker. ioredis retries
 * failed connections on its own and emits an error for every attempt, so after the first error
 * only one line per interval is logged, with the number of errors left out.
 */
export function logConnectionErrors(
  emitter: EventEmitter,
  logger: Logger,
  connection: string,
): void {
  let lastLogged = 0;
  let suppressed = 0;
  emitter.on("error", (error: unknown) => {
    const now = Date.now();
    if (now - lastLogged < ERROR_LOG_INTERVAL_MS) {
      suppressed++;
      return;
    }
    logger.warn({ err: error, connection, suppressed }, "Redis connection error; retrying");
    lastLogged = now;
    suppressed = 0;
  });
}
