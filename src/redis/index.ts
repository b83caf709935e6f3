export { type ConnectRedisOptions, connectRedis } from "./connect.ts";
export {
  type EmbeddedRedis,
  EmbeddedRedisError,
  type EmbeddedRedisFailure,
  type EmbeddedRedisOptions,
  startEmbeddedRedis,
} from "./embedded.ts";
export { checkEvictionPolicy, EvictionPolicyError, readEvictionPolicy } from "./eviction.ts";
export { findFreePort } from "./free-port.ts";
export type { RedisLogger } from "./logger.ts";
export { redactRedisUrl } from "./url.ts";
