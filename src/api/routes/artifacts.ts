/** Listing and downloading a job's artifacts, with ETag, conditional and range requests. */

import type { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { artifactKey } from "../../jobs/model.ts";
import { isStorageError } from "../../storage/errors.ts";
import type { ByteRange } from "../../storage/types.ts";
import { principalOf } from "../auth.ts";
import type { ApiContext } from "../context.ts";
import { ApiError, errorBody } from "../errors.ts";
import { loadJob } from "../job-lookup.ts";
import { matchesIfNoneMatch, parseRange, rangeApplies } from "../range.ts";
import { artifactParamsSchema, jobParamsSchema } from "../schemas.ts";

function contentTypeOf(name: string): string {
  return name.endsWith(".json") ? "application/json" : "application/octet-stream";
}

/** `filename` parameter of Content-Disposition; artifact names are plain file names from the pipeline. */
function attachment(name: string): string {
  return `attachment; filename="${name.replace(/["\\]/g, "_")}"`;
}

/** Opens the artifact's object, or a byte range of it, as a stream. */
async function openArtifact(
  context: ApiContext,
  jobId: string,
  name: string,
  range: ByteRange | undefined,
): Promise<Readable> {
  try {
    return await context.storage.get(artifactKey(jobId, name), range);
  } catch (error) {
    if (isStorageError(error, "NOT_FOUND")) {
      throw new ApiError(
        "ARTIFACT_NOT_FOUND",
        `Artifact ${JSON.stringify(name)} of job ${jobId} is missing from storage; delete the job and submit it again.`,
      );
    }
    throw error;
  }
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

export function registerArtifactRoutes(app: FastifyInstance, context: ApiContext): void {
  const typed = app.withTypeProvider<ZodTypeProvider>();

  typed.get("/v1/jobs/:id/artifacts", { schema: { params: jobParamsSchema } }, async (request) => {
    const job = await loadJob(context, request.params.id, principalOf(request));
    return { jobId: job.id, status: job.status, artifacts: job.artifacts ?? [] };
  });

  // HEAD is routed here too and is served from the job record without opening the object, because
  // Fastify's automatic HEAD route would read the whole object and discard it.
  typed.route({
    method: ["GET", "HEAD"],
    url: "/v1/jobs/:id/artifacts/:name",
    schema: { params: artifactParamsSchema },
    handler: async (request, reply) => {
      const job = await loadJob(context, request.params.id, principalOf(request));
      const { name } = request.params;
      // Only names from the job's own list reach storage, so a URL cannot name any other key.
      const artifact = job.artifacts?.find((candidate) => candidate.name === name);
      if (artifact === undefined) {
        const known =
          (job.artifacts ?? []).map((candidate) => candidate.name).join(", ") || "none yet";
        throw new ApiError(
          "ARTIFACT_NOT_FOUND",
          `Job ${job.id} has no artifact ${JSON.stringify(name)}; its artifacts: ${known}.`,
        );
      }

      const etag = `"${artifact.sha256}"`;
      reply.header("etag", etag).header("accept-ranges", "bytes");
      if (matchesIfNoneMatch(headerText(request.headers["if-none-match"]), etag)) {
        return reply.code(304).send();
      }

      const ifRange = headerText(request.headers["if-range"]);
      const range = rangeApplies(ifRange, etag)
        ? parseRange(request.headers.range, artifact.size)
        : { kind: "full" as const };
      if (range.kind === "unsatisfiable") {
        const message = `Range ${request.headers.range} lies outside ${name}, which has ${artifact.size} bytes.`;
        return reply
          .code(416)
          .header("content-range", `bytes */${artifact.size}`)
          .send(errorBody("RANGE_NOT_SATISFIABLE", message));
      }

      // The object is opened before any header is set, so a storage error gets a clean error body.
      const byteRange = range.kind === "partial" ? range.range : undefined;
      const body =
        request.method === "HEAD"
          ? undefined
          : await openArtifact(context, job.id, name, byteRange);

      reply
        .header("content-type", contentTypeOf(name))
        .header("content-disposition", attachment(name));
      if (byteRange) {
        reply
          .code(206)
          .header("content-range", `bytes ${byteRange.start}-${byteRange.end}/${artifact.size}`)
          .header("content-length", String(byteRange.end - byteRange.start + 1));
      } else {
        reply.header("content-length", String(artifact.size));
      }
      return reply.send(body);
    },
  });
}
