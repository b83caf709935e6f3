/** `POST /v1/jobs`: submit a checkpoint as a multipart upload or as a storage prefix. */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { parseCompressionOptions } from "../../compression/options.ts";
import { newJobId } from "../../jobs/ids.ts";
import { inputsFromSource } from "../../jobs/inputs.ts";
import { jobStoragePrefix, toJobView } from "../../jobs/model.ts";
import { validateKey } from "../../storage/keys.ts";
import { type Principal, principalOf } from "../auth.ts";
import type { ApiContext } from "../context.ts";
import { API_ERRORS, ApiError } from "../errors.ts";
import { IDEMPOTENCY_KEY, sourceBodySchema } from "../schemas.ts";
import { type Submission, submitJob } from "../submit.ts";
import {
  closeWhenIdle,
  DEFAULT_UPLOAD_IDLE_SECONDS,
  discardRemainingBody,
  receiveUpload,
} from "../upload.ts";

/** Storage prefix a tenant's `source` submissions must lie under, unless it is an administrator. */
export function tenantSourcePrefix(tenant: string): string {
  return `tenants/${tenant}/`;
}

function idempotencyKeyOf(request: FastifyRequest): string | undefined {
  const header = request.headers["idempotency-key"];
  if (header === undefined) return undefined;
  if (typeof header !== "string" || !IDEMPOTENCY_KEY.test(header)) {
    throw new ApiError(
      "INVALID_REQUEST",
      "Idempotency-Key must be 1 to 255 visible ASCII characters, such as a UUID",
      "Idempotency-Key",
    );
  }
  return header;
}

/** Builds a submission from a JSON body `{ source, options }`. */
async function sourceSubmission(
  context: ApiContext,
  request: FastifyRequest,
  id: string,
  principal: Principal,
): Promise<Submission> {
  const body = sourceBodySchema.safeParse(request.body);
  if (!body.success) {
    const issue = body.error.issues[0];
    const field = issue.path.length > 0 ? issue.path.join(".") : "body";
    throw new ApiError("INVALID_REQUEST", `Invalid ${field}: ${issue.message}`, field);
  }
  const options = parseCompressionOptions(body.data.options);
  if (!options.ok)
    throw new ApiError("INVALID_OPTIONS", options.issue.message, options.issue.field);

  const source = body.data.source.replace(/\/$/, "");
  try {
    validateKey(source);
  } catch (error) {
    throw new ApiError("INVALID_SOURCE", (error as Error).message, "source");
  }
  const allowed = tenantSourcePrefix(principal.tenant);
  if (!principal.admin && !`${source}/`.startsWith(allowed)) {
    throw new ApiError(
      "INVALID_SOURCE",
      `source ${JSON.stringify(source)} is outside this tenant's storage prefix: use a prefix under ${JSON.stringify(allowed)}`,
      "source",
    );
  }
  const inputs = await inputsFromSource(context.storage, source);
  return { id, tenant: principal.tenant, options: options.options, inputs };
}

/** Deletes what an upload stored; failures are logged because the request has already failed. */
async function removeUploads(
  context: ApiContext,
  request: FastifyRequest,
  id: string,
): Promise<void> {
  try {
    await context.storage.deletePrefix(jobStoragePrefix(id));
  } catch (error) {
    request.log.error(
      { err: error, jobId: id },
      "Failed to delete the objects of a rejected upload",
    );
  }
}

/** Checks the media type and stores the inputs; returns the submission to validate. */
async function readSubmission(
  context: ApiContext,
  request: FastifyRequest,
  id: string,
  multipart: boolean,
): Promise<Submission> {
  const idempotencyKey = idempotencyKeyOf(request);
  const principal = principalOf(request);
  if (multipart) {
    const upload = await receiveMultipart(context, request, id, principal);
    return { id, tenant: principal.tenant, ...upload, idempotencyKey };
  }
  const mediaType = (request.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
  if (mediaType !== "application/json") {
    throw new ApiError(
      "UNSUPPORTED_MEDIA_TYPE",
      `Content-Type ${JSON.stringify(mediaType)} is not accepted. ${API_ERRORS.UNSUPPORTED_MEDIA_TYPE.message}`,
    );
  }
  return { ...(await sourceSubmission(context, request, id, principal)), idempotencyKey };
}

/**
 * Checks the declared Content-Length against the tenant's storage quota, then streams the parts
 * into storage while the idle timeout watches the connection.
 */
async function receiveMultipart(
  context: ApiContext,
  request: FastifyRequest,
  id: string,
  principal: Principal,
) {
  const limiter = context.tenantLimiter;
  const declared = Number(request.headers["content-length"] ?? "0");
  if (Number.isSafeInteger(declared)) await limiter.checkStorage(principal.tenant, declared);
  const quotaRemaining = await limiter.remainingStorage(principal.tenant);

  const idleSeconds = context.limits.uploadIdleSeconds ?? DEFAULT_UPLOAD_IDLE_SECONDS;
  const stopWatch = closeWhenIdle(request, idleSeconds * 1000);
  try {
    return await receiveUpload(request, context.storage, id, {
      maxUploadBytes: context.limits.maxUploadBytes,
      tenant: principal.tenant,
      quotaBytes: limiter.limits.maxStoredBytes,
      quotaRemaining,
    });
  } finally {
    stopWatch();
  }
}

async function createJob(context: ApiContext, request: FastifyRequest, reply: FastifyReply) {
  const id = newJobId();
  const multipart = request.isMultipart();
  let result: Awaited<ReturnType<typeof submitJob>>;
  try {
    // NOTE: checked before the upload and not atomically with the create, so concurrent
    // submissions of one tenant can pass the limit by the number in flight.
    await context.tenantLimiter.checkActiveJobs(principalOf(request).tenant);
    result = await submitJob(context, await readSubmission(context, request, id, multipart));
  } catch (error) {
    if (multipart) {
      discardRemainingBody(request, context.limits.maxUploadBytes);
      await removeUploads(context, request, id);
    }
    throw error;
  }
  // A replayed request gets the earlier job, so this request's copy of the upload is not needed.
  if (!result.created && multipart) await removeUploads(context, request, id);

  request.log.info(
    { jobId: result.job.id, created: result.created, method: result.job.options.method },
    result.created ? "Job queued" : "Idempotent request returned an existing job",
  );
  reply.code(202).header("location", `/v1/jobs/${result.job.id}`);
  if (!result.created) reply.header("idempotent-replayed", "true");
  return toJobView(result.job);
}

export function registerCreateJobRoute(app: FastifyInstance, context: ApiContext): void {
  app.post("/v1/jobs", (request, reply) => createJob(context, request, reply));
}
