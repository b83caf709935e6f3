/**
 * Server-sent events for one job. The stream replays the job's event log from the start or after
 * `Last-Event-ID`, then sends new events as they are appended. It ends once the job is in a final
 * status and its last event was sent. A comment line goes out whenever the stream was idle for a
 * heartbeat interval, so proxies keep the connection open.
 */

import { once } from "node:events";
import type { ServerResponse } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";
import { type JobEvent, readJobEvents } from "../jobs/events.ts";
import { isFinalStatus, isJobStatus } from "../jobs/model.ts";
import type { ApiContext } from "./context.ts";

/** Milliseconds a client waits before reconnecting after the stream drops, sent as `retry:`. */
const RECONNECT_DELAY_MS = 2000;

export function formatEvent(event: JobEvent): string {
  return `id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event.data)}\n\n`;
}

async function write(raw: ServerResponse, text: string): Promise<void> {
  if (raw.destroyed) return;
  // A client that disconnects while the buffer is full never drains it, so "close" ends the wait too.
  if (!raw.write(text)) await Promise.race([once(raw, "drain"), once(raw, "close")]);
}

/** Resolves after `ms` or as soon as `wake` is called, telling which came first. */
function sleepUntilWoken(ms: number): { promise: Promise<"woken" | "timeout">; wake: () => void } {
  let wake: () => void = () => {};
  const promise = new Promise<"woken" | "timeout">((resolve) => {
    const timer = setTimeout(() => resolve("timeout"), ms);
    wake = () => {
      clearTimeout(timer);
      resolve("woken");
    };
  });
  return { promise, wake };
}

/**
 * Returns true when the stream should end: every event was sent and the job is gone or in a final
 * status. A final event alone does not end the stream, because a retried job's log continues
 * after the `failed` or `cancelled` event of its earlier run.
 */
async function jobIsOver(context: ApiContext, jobId: string): Promise<boolean> {
  const status = await context.redis.hget(context.keys.job(jobId), "status");
  return status === null || (isJobStatus(status) && isFinalStatus(status));
}

/**
 * Takes over the response and streams the job's events until the job is final, the client goes
 * away, or the app closes (clients then reconnect with `Last-Event-ID`).
 */
export async function streamJobEvents(
  request: FastifyRequest,
  reply: FastifyReply,
  context: ApiContext,
  jobId: string,
  lastEventId: string | undefined,
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
    "x-request-id": request.id,
  });

  let pending = true;
  let sleeper: ReturnType<typeof sleepUntilWoken> | undefined;
  const wake = () => {
    pending = true;
    sleeper?.wake();
  };
  let clientGone = false;
  raw.once("close", () => {
    clientGone = true;
    wake();
  });
  const unwatch = context.events.watch(jobId, wake);

  let after = lastEventId;
  try {
    await write(raw, `retry: ${RECONNECT_DELAY_MS}\n\n`);
    while (!clientGone && !context.events.closed) {
      pending = false;
      const events = await readJobEvents(context.redis, context.keys, jobId, after);
      for (const event of events) {
        await write(raw, formatEvent(event));
        after = event.id;
      }
      if (events.length > 0) continue;
      if (await jobIsOver(context, jobId)) {
        // The final event may have been appended between the read above and the status check.
        const last = await readJobEvents(context.redis, context.keys, jobId, after);
        for (const event of last) await write(raw, formatEvent(event));
        return;
      }
      if (pending) continue;
      sleeper = sleepUntilWoken(context.limits.heartbeatMs);
      if ((await sleeper.promise) === "timeout" && !clientGone) await write(raw, ": heartbeat\n\n");
      sleeper = undefined;
    }
  } catch (error) {
    request.log.warn({ err: error, jobId }, "Event stream ended by an error");
  } finally {
    unwatch();
    if (!raw.writableEnded) raw.end();
  }
}
