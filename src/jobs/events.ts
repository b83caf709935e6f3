/**
 * Reading the per-job event log (a Redis stream written by the job store) and waking readers when
 * new events arrive (one pub/sub subscription per process, fanned out to the waiting readers).
 */

import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { logConnectionErrors } from "./connection-errors.ts";
import type { JobKeys } from "./keys.ts";
import type { EventType } from "./store.ts";

/** One stored event; `id` is the Redis stream entry id, which SSE sends as the event id. */
export interface JobEvent {
  id: string;
  type: EventType;
  data: Record<string, unknown>;
}

/** Stream entry ids are `<milliseconds>-<sequence>`. */
const STREAM_ID = /^\d{1,20}-\d{1,20}$/;

export function isEventId(value: string): boolean {
  return STREAM_ID.test(value);
}

/** Events read per XRANGE call; a job has one event per layer plus a few status events. */
const READ_BATCH = 500;

/** Reads the events of `jobId` after `afterId` (exclusive), or from the start, oldest first. */
export async function readJobEvents(
  redis: Redis,
  keys: JobKeys,
  jobId: string,
  afterId: string | undefined,
): Promise<JobEvent[]> {
  const start = afterId === undefined ? "-" : `(${afterId}`;
  const entries = await redis.xrange(keys.events(jobId), start, "+", "COUNT", READ_BATCH);
  return entries.map(([id, fields]) => parseEntry(id, fields));
}

function parseEntry(id: string, fields: string[]): JobEvent {
  const values = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) values.set(fields[i], fields[i + 1]);
  const type = values.get("type") === "progress" ? "progress" : "status";
  const data = JSON.parse(values.get("data") ?? "{}") as Record<string, unknown>;
  return { id, type, data };
}

type Wake = () => void;

/**
 * Wakes event readers of a job when the job store publishes on the event channel. One subscriber
 * connection serves every reader in the process. A reader registers before it reads the stream,
 * so an event published between its read and its wait still wakes it.
 */
export class EventHub {
  readonly #subscriber: Redis;
  readonly #channel: string;
  readonly #waiters = new Map<string, Set<Wake>>();
  #closed = false;

  private constructor(subscriber: Redis, channel: string) {
    this.#subscriber = subscriber;
    this.#channel = channel;
    subscriber.on("message", (channel: string, jobId: string) => {
      if (channel === this.#channel) this.#wake(jobId);
    });
    // After a reconnect, events may have been published while no one listened: wake everyone
    // so each reader re-reads its stream.
    subscriber.on("ready", () => this.#wakeAll());
  }

  /** Subscribes a duplicate of `redis` to the event channel. */
  static async open(redis: Redis, keys: JobKeys, logger: Logger): Promise<EventHub> {
    const subscriber = redis.duplicate({ connectionName: "pifa-events" });
    logConnectionErrors(subscriber, logger, "pifa-events");
    const hub = new EventHub(subscriber, keys.eventChannel());
    await subscriber.subscribe(keys.eventChannel());
    return hub;
  }

  /** Calls `wake` whenever `jobId` gets an event, until the returned function is called. */
  watch(jobId: string, wake: Wake): () => void {
    let set = this.#waiters.get(jobId);
    if (!set) {
      set = new Set();
      this.#waiters.set(jobId, set);
    }
    set.add(wake);
    return () => {
      set.delete(wake);
      if (set.size === 0 && this.#waiters.get(jobId) === set) this.#waiters.delete(jobId);
    };
  }

  get closed(): boolean {
    return this.#closed;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakeAll();
    this.#subscriber.disconnect();
  }

  #wake(jobId: string): void {
    for (const wake of this.#waiters.get(jobId) ?? []) wake();
  }

  #wakeAll(): void {
    for (const set of this.#waiters.values()) for (const wake of set) wake();
  }
}
