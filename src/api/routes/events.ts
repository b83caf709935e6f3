/** `GET /v1/jobs/{id}/events`: the job's status and progress as server-sent events. */

import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { isEventId } from "../../jobs/events.ts";
import { principalOf } from "../auth.ts";
import type { ApiContext } from "../context.ts";
import { ApiError } from "../errors.ts";
import { loadJob } from "../job-lookup.ts";
import { jobParamsSchema } from "../schemas.ts";
import { streamJobEvents } from "../sse.ts";

export function registerEventRoutes(app: FastifyInstance, context: ApiContext): void {
  app
    .withTypeProvider<ZodTypeProvider>()
    .get(
      "/v1/jobs/:id/events",
      { schema: { params: jobParamsSchema }, exposeHeadRoute: false },
      async (request, reply) => {
        const job = await loadJob(context, request.params.id, principalOf(request));
        const header = request.headers["last-event-id"];
        const lastEventId =
          typeof header === "string" && header.trim() !== "" ? header.trim() : undefined;
        if (lastEventId !== undefined && !isEventId(lastEventId)) {
          throw new ApiError("INVALID_EVENT_ID", undefined, "Last-Event-ID");
        }
        const stream = streamJobEvents(request, reply, context, job.id, lastEventId);
        context.openStreams.add(stream);
        try {
          await stream;
        } finally {
          context.openStreams.delete(stream);
        }
      },
    );
}
