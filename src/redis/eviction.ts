import type { Redis } from "ioredis";

/** Raised when Redis may evict keys, which would silently delete BullMQ jobs. */
export class EvictionPolicyError extends Error {
  override readonly name = "EvictionPolicyError";
  readonly policy: string;

  constructor(policy: string, server: string) {
    super(
      `Redis at ${server} has maxmemory-policy "${policy}", but pifa-service needs "noeviction". ` +
        "With any other policy Redis deletes keys when it reaches maxmemory, and BullMQ then loses queued and running jobs without an error. " +
        'Fix: run "CONFIG SET maxmemory-policy noeviction" and put "maxmemory-policy noeviction" in redis.conf, ' +
        "or choose the noeviction policy in the settings of your managed Redis.",
    );
    this.policy = policy;
  }
}

function describeServer(redis: Redis): string {
  const { host, port, path } = redis.options;
  return path ? path : `${host}:${port}`;
}

/**
 * Reads the server's `maxmemory-policy` with `CONFIG GET`, falling back to the `maxmemory_policy`
 * field of `INFO memory` where CONFIG is disabled or denied, as on many managed Redis services.
 */
export async function readEvictionPolicy(redis: Redis): Promise<string> {
  let configError: unknown;
  try {
    const reply = (await redis.config("GET", "maxmemory-policy")) as unknown;
    if (Array.isArray(reply) && typeof reply[1] === "string") {
      return reply[1];
    }
  } catch (error) {
    configError = error;
  }
  const info = await redis.info("memory");
  const match = /^maxmemory_policy:(\S+)/m.exec(info);
  if (!match?.[1]) {
    const reason = configError instanceof Error ? configError.message : "an empty reply";
    throw new Error(
      `Cannot read maxmemory-policy of Redis at ${describeServer(redis)}: CONFIG GET failed with ${reason}, and INFO memory has no maxmemory_policy field. Check that the connection may run CONFIG or INFO.`,
    );
  }
  return match[1];
}

/** Resolves with the policy when it is `noeviction` and throws an `EvictionPolicyError` otherwise. */
export async function checkEvictionPolicy(redis: Redis): Promise<string> {
  const policy = await readEvictionPolicy(redis);
  if (policy !== "noeviction") {
    throw new EvictionPolicyError(policy, describeServer(redis));
  }
  return policy;
}
