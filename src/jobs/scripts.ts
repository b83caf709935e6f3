/**
 * Lua scripts that change a job record together with its indexes and event stream in one atomic
 * step, so a reader never sees a status without its event or an index entry without its record.
 *
 * The scripts build some key names from a prefix argument (the per-status index of the old
 * status, the record of an existing idempotent job). The prefix carries a hash tag, so those keys
 * live in the same Redis Cluster slot as the declared ones.
 */

import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

/** A Lua script run with EVALSHA, falling back to EVAL once when Redis does not have it cached. */
export class LuaScript {
  readonly source: string;
  readonly sha1: string;

  constructor(source: string) {
    this.source = source;
    this.sha1 = createHash("sha1").update(source).digest("hex");
  }

  async run(redis: Redis, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha1, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

/**
 * Creates a job unless its idempotency key is already claimed by a job that still exists.
 *
 * KEYS: job hash, all-jobs index, queued index, event stream, idempotency key.
 * ARGV: id, fingerprint ("" without an idempotency key), idempotency TTL in seconds, job hash
 * prefix (`<prefix>:job:`), status event data, event channel, then field/value pairs.
 * Returns `{"created", id, eventId}` or `{"exists", otherId, otherFingerprint}`.
 */
export const CREATE_JOB = new LuaScript(`
local fingerprint = ARGV[2]
if fingerprint ~= '' then
  local claimed = redis.call('GET', KEYS[5])
  if claimed then
    local space = string.find(claimed, ' ', 1, true)
    local claimedId = string.sub(claimed, 1, space - 1)
    if redis.call('EXISTS', ARGV[4] .. claimedId) == 1 then
      return {'exists', claimedId, string.sub(claimed, space + 1)}
    end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
local eventId = redis.call('XADD', KEYS[4], '*', 'type', 'status', 'data', ARGV[5])
if fingerprint ~= '' then
  redis.call('SET', KEYS[5], ARGV[1] .. ' ' .. fingerprint, 'EX', ARGV[3])
end
redis.call('PUBLISH', ARGV[6], ARGV[1])
return {'created', ARGV[1], eventId}
`);

/**
 * Moves a job from one of the allowed statuses to a new one (or keeps its status), sets fields,
 * and appends one event. Nothing changes for a missing job or a status outside the allowed list.
 *
 * KEYS: job hash, event stream, finished index.
 * ARGV:
 *   1. job id
 *   2. allowed statuses, separated by spaces
 *   3. new status, or "" to keep the current one
 *   4. status index prefix (`<prefix>:jobs:status:`)
 *   5. event type, or "" for no event
 *   6. event data (JSON)
 *   7. event channel
 *   8. finish time in milliseconds, the score in the finished index
 *   9. TTL in seconds for a final status, "0" when the new status is not final
 *   10 and later: field/value pairs
 * Returns `{outcome, statusBefore, cancelRequested}` with outcome "ok", "missing" or "conflict".
 */
export const TRANSITION_JOB = new LuaScript(`
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return {'missing', '', '0'}
end
if not string.find(' ' .. ARGV[2] .. ' ', ' ' .. current .. ' ', 1, true) then
  return {'conflict', current, redis.call('HGET', KEYS[1], 'cancelRequested') or '0'}
end
if #ARGV >= 10 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 10))
end
local target = ARGV[3]
if target ~= '' and target ~= current then
  redis.call('HSET', KEYS[1], 'status', target)
  redis.call('ZREM', ARGV[4] .. current, ARGV[1])
  redis.call('ZADD', ARGV[4] .. target, 0, ARGV[1])
end
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[2], '*', 'type', ARGV[5], 'data', ARGV[6])
  redis.call('PUBLISH', ARGV[7], ARGV[1])
end
if ARGV[9] ~= '0' then
  redis.call('ZADD', KEYS[3], ARGV[8], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[9])
  redis.call('EXPIRE', KEYS[2], ARGV[9])
end
return {'ok', current, redis.call('HGET', KEYS[1], 'cancelRequested') or '0'}
`);

/**
 * Queues a failed or cancelled job again: clears its error and finish time, takes it out of the
 * finished index and removes the expiry that the final status set.
 *
 * KEYS: job hash, event stream, finished index.
 * ARGV: id, status index prefix (`<prefix>:jobs:status:`), status event data, event channel, then
 * field/value pairs.
 * Returns `{outcome, statusBefore}` with outcome "ok", "missing" or "conflict".
 */
export const REQUEUE_JOB = new LuaScript(`
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return {'missing', ''}
end
if current ~= 'failed' and current ~= 'cancelled' then
  return {'conflict', current}
end
redis.call('HDEL', KEYS[1], 'error', 'finishedAt')
if #ARGV >= 5 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5))
end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('ZREM', ARGV[2] .. current, ARGV[1])
redis.call('ZADD', ARGV[2] .. 'queued', 0, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('XADD', KEYS[2], '*', 'type', 'status', 'data', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return {'ok', current}
`);
