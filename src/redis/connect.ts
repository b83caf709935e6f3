import { Redis } from "ioredis";
import { redactRedisUrl } from "./url.ts";

export interface ConnectRedisOptions {
  /**
   * For a BullMQ Worker connection: sets `maxRetriesPerRequest: null`, which BullMQ requires so
   * that its blocking commands wait through reconnects instead of failing.
   */
  forWorker?: boolean;
  /** Client name shown by `CLIENT LIST`, to tell the service's connections apart. */
  connectionName?: string;
}

/** Opens an ioredis connection to a `redis://` or `rediss://` (TLS) URL. */
export function connectRedis(url: string, options: ConnectRedisOptions = {}): Redis {
  if (!/^rediss?:\/\//i.test(url)) {
    throw new Error(
      `Invalid Redis URL ${JSON.stringify(redactRedisUrl(url))}: expected redis://[user:password@]host[:port][/db] or rediss://... for TLS.`,
    );
  }
  return new Redis(url, {
    ...(options.forWorker ? { maxRetriesPerRequest: null } : {}),
    ...(options.connectionName ? { connectionName: options.connectionName } : {}),
  });
}
