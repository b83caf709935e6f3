/** Reading, listing, cancelling and deleting jobs. */

import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { isJobId } from "../../jobs/ids.ts";
import { isFinalStatus, toJobView } from "../../jobs/model.ts";
import { deleteJobEverywhere } from "../../jobs/removal.ts";
import { type Principal, principalOf } from "../auth.ts";
import type { ApiContext } from "../context.ts";
import { ApiError } from "../errors.ts";
import { loadJob } from "../job-lookup.ts";
import { jobParamsSchema, listQuerySchema } from "../schemas.ts";

/** Cursors are the last id of a page in base64url, opaque to clients. */
function encodeCursor(id: string): string {
  return Buffer.from(id, "utf8").toString("base64url");
}

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, "base64url").toString("utf8");
  if (!isJobId(id)) throw new ApiError("INVALID_CURSOR", undefined, "after");
  return id;
}

/**
 * Cancels a job and returns it afterwards. A queued job is removed from the queue and cancelled
 * at once. A running job gets the cancel flag, which its worker reads after the current layer.
 */
async function cancelJob(context: ApiContext, id: string, principal: Principal) {
  const record = await loadJob(context, id, principal);
  const finishedMessage = (status: string) =>
    `Job ${id} is already ${status}, so it cannot be cancelled; delete it to remove its data.`;
  if (isFinalStatus(record.status))
    throw new ApiError("JOB_FINISHED", finishedMessage(record.status));

  const flagged = await context.store.requestCancel(id);
  if (flagged.outcome === "missing") return loadJob(context, id, principal);
  if (flagged.outcome === "conflict")
    throw new ApiError("JOB_FINISHED", finishedMessage(flagged.statusBefore));

  if (flagged.statusBefore === "queued" && (await context.queue.removeUnlocked(id))) {
    await context.store.transition(id, {
      from: ["queued"],
      to: "cancelled",
      fields: { finishedAt: new Date().toISOString() },
      event: { type: "status", data: { status: "cancelled", at: new Date().toISOString() } },
    });
  }
  return loadJob(context, id, principal);
}

/**
 * Queues a failed or cancelled job again. Its worker resumes after the layers an earlier attempt
 * saved, so only the unfinished layers are computed.
 */
async function retryJob(context: ApiContext, id: string, principal: Principal) {
  const record = await loadJob(context, id, principal);
  const notRetryable = (status: string) =>
    new ApiError(
      "JOB_NOT_RETRYABLE",
      `Job ${id} is ${status}; only failed or cancelled jobs can be retried. Submit a new job instead.`,
    );
  if (record.status !== "failed" && record.status !== "cancelled")
    throw notRetryable(record.status);
  if (!(await context.queue.removeFinished(id))) {
    throw new ApiError(
      "JOB_NOT_RETRYABLE",
      `Job ${id} is still held by its worker, which is stopping it; retry in a few seconds.`,
    );
  }

  const requeued = await context.store.requeue(id);
  if (requeued.outcome === "missing") return loadJob(context, id, principal);
  if (requeued.outcome === "conflict") throw notRetryable(requeued.statusBefore);
  try {
    await context.queue.enqueue(id);
  } catch (error) {
    // Without a BullMQ job no worker would pick the record up, so put the old status back.
    await context.store.transition(id, {
      from: ["queued"],
      to: requeued.statusBefore,
      fields: { finishedAt: new Date().toISOString() },
      event: {
        type: "status",
        data: { status: requeued.statusBefore, at: new Date().toISOString() },
      },
    });
    throw error;
  }
  return loadJob(context, id, principal);
}

export function registerJobRoutes(app: FastifyInstance, context: ApiContext): void {
  const typed = app.withTypeProvider<ZodTypeProvider>();

  typed.get("/v1/jobs", { schema: { querystring: listQuerySchema } }, async (request) => {
    const { limit, after, status, tenant } = request.query;
    const afterId = after === undefined ? undefined : decodeCursor(after);
    const principal = principalOf(request);
    // Other callers list only their own tenant's jobs; the tenant filter is for administrators.
    const listed = principal.admin ? tenant : principal.tenant;
    const page = await context.store.list({ status, afterId, limit, tenant: listed });
    const last = page.jobs.at(-1);
    return {
      jobs: page.jobs.map((job) => toJobView(job, { report: false })),
      nextCursor: page.hasMore && last ? encodeCursor(last.id) : null,
    };
  });

  typed.get("/v1/jobs/:id", { schema: { params: jobParamsSchema } }, async (request) => {
    return toJobView(await loadJob(context, request.params.id, principalOf(request)));
  });

  typed.post(
    "/v1/jobs/:id/cancel",
    { schema: { params: jobParamsSchema } },
    async (request, reply) => {
      const job = await cancelJob(context, request.params.id, principalOf(request));
      request.log.info({ jobId: job.id, status: job.status }, "Job cancellation requested");
      // 200 when the job is cancelled already, 202 while its worker still has to stop it.
      reply.code(job.status === "cancelled" ? 200 : 202);
      return toJobView(job);
    },
  );

  typed.post(
    "/v1/jobs/:id/retry",
    { schema: { params: jobParamsSchema } },
    async (request, reply) => {
      const job = await retryJob(context, request.params.id, principalOf(request));
      request.log.info({ jobId: job.id }, "Job queued again");
      reply.code(202);
      return toJobView(job);
    },
  );

  typed.delete("/v1/jobs/:id", { schema: { params: jobParamsSchema } }, async (request, reply) => {
    const id = request.params.id;
    const record = await loadJob(context, id, principalOf(request));
    if (!isFinalStatus(record.status)) {
      const flagged = await context.store.requestCancel(id);
      if (flagged.outcome === "ok" && flagged.statusBefore === "queued")
        await context.queue.removeUnlocked(id);
    }
    await deleteJobEverywhere(context.store, context.storage, id);
    request.log.info({ jobId: id, status: record.status }, "Job deleted");
    return reply.code(204).send();
  });
}
